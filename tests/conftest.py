"""Import `ansible_collections.*` the way the Ansible CLIs do: through Ansible's
collection loader, with the checkout linked at .collections (scripts/bootstrap.sh).
Installing the loader once, before any test imports a plugin, keeps in-process
Ansible objects (InventoryManager, Templar) and direct imports on the same modules.
The deploy-host scripts in tools/ are importable by their own names (`import lab`), as
they import each other."""

import sys
from pathlib import Path

from ansible.plugins.loader import init_plugin_loader

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".collections"
if not (COLLECTIONS / "ansible_collections" / "vrstack" / "cloud").exists():
    raise RuntimeError(f"{COLLECTIONS} is missing: run `make bootstrap` first")
init_plugin_loader([str(COLLECTIONS)])
sys.path.insert(0, str(ROOT / "tools"))
