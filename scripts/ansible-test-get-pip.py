"""Stand-in for the pip bootstrap script that ansible-test downloads from a host
this machine cannot reach: install pip from the interpreter's own ensurepip
wheel, then install what ansible-test asked for from the package index.

ansible-test runs it as `get_pip_<version>.py [--disable-pip-version-check]
[--no-setuptools] [--no-wheel] PACKAGES...`."""

import ensurepip
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
saved = os.environ.get("PIP_CONFIG_FILE")
ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null; the machine's pip settings
# (index, CA bundle) must apply to the real install.
os.environ.pop("PIP_CONFIG_FILE", None)
if saved is not None:
    os.environ["PIP_CONFIG_FILE"] = saved
if args:
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args]))
