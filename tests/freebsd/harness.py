"""Run the collection's roles for FreeBSD hosts on this Linux machine.

There is no FreeBSD host here, so the hosts of an inventory are played locally
(`ansible_connection=local`, forced by extra vars) with facts that say FreeBSD 14,
against a copy of the collection whose task files are rewritten:

- tasks that write or read files (template, copy, file, lineinfile, blockinfile,
  stat, find, slurp, replace) run for real, their paths moved under a per-host root
  directory; owner and group are taken out (this machine has no `wheel` group) and
  kept in the record file, so the tests can check the names exist on FreeBSD;
- `community.general.sysrc` edits the root's /etc/rc.conf as sysrc(8) would
  (vrstack_test.freebsd.sysrc), `ansible.posix.sysctl` becomes a line in its
  /etc/sysctl.conf (what it writes on a FreeBSD host);
- every other module that acts on the host (pkg, service, pw, kldload, commands,
  HTTP to local services, ...) becomes `vrstack_test.freebsd.standin`, which records
  the module and its arguments as Ansible templated them, and answers like a fresh
  host whose commands succeed silently;
- control flow (include_*, blocks, assert, fail, set_fact, handlers, meta) and tasks
  delegated to the deploy host run unchanged.

So Ansible itself evaluates every variable, condition, loop and template on the
FreeBSD path; what a FreeBSD host would answer is not tested (docs/freebsd.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# What a FreeBSD 14 amd64 host reports to setup (the keys the roles read).
FREEBSD_FACTS: dict[str, Any] = {
    "system": "FreeBSD",
    "os_family": "FreeBSD",
    "distribution": "FreeBSD",
    "distribution_major_version": "14",
    "distribution_version": "14.3",
    "distribution_release": "14.3-RELEASE",
    "kernel": "14.3-RELEASE",
    "architecture": "amd64",
    "machine": "amd64",
    "virtualization_role": "host",
    "virtualization_type": "",
    "pkg_mgr": "pkgng",
    "service_mgr": "bsdinit",
    "memtotal_mb": 16384,
    "processor_vcpus": 4,
    "python": {
        "version": {"major": 3, "minor": 11, "micro": 11},
        "executable": "/usr/local/bin/python3.11",
    },
}

# Users and groups of a FreeBSD base system (name: uid/gid); the service users
# the common role creates are added by the harness, as a host after common has them.
FREEBSD_BASE_USERS = {"root": 0, "daemon": 1, "operator": 2, "nobody": 65534}
FREEBSD_BASE_GROUPS = {"wheel": 0, "daemon": 1, "operator": 5, "nobody": 65534, "nogroup": 65533}

# Files a FreeBSD base install has that the roles edit in place.
FREEBSD_SEED = {
    "etc/rc.conf": "",
    "etc/sysctl.conf": "",
    "boot/loader.conf": "",
    "etc/hosts": "::1\t\t\tlocalhost localhost.my.domain\n127.0.0.1\t\tlocalhost localhost.my.domain\n",
    # The kernel source the vrouter KLD is built against.
    "usr/src/sys/conf/kmod.mk": "",
    # Base system programs roles look for before they use them.
    "usr/bin/openssl": "",
}
FREEBSD_DIRS = [
    "root",
    "usr/local/etc/rc.d",
    "usr/local/bin",
    "var/db",
    "var/log",
    "var/run",
    "tmp",
]

# Modules that only decide, compute or include: they run as they are.
CONTROL = {
    "assert",
    "checks",  # vrstack.cloud.checks: asserts in one task, on the deploy host
    "fail",
    "debug",
    "set_fact",
    "include_tasks",
    "import_tasks",
    "include_role",
    "import_role",
    "include_vars",
    "meta",
    "set_stats",
    "pause",
    "add_host",
    "group_by",
}
# File modules and the arguments that are paths on the host.
FILES = {
    "template": ["dest"],
    "copy": ["dest"],
    "file": ["path", "dest"],
    "lineinfile": ["path", "dest"],
    "blockinfile": ["path", "dest"],
    "replace": ["path", "dest"],
    "stat": ["path"],
    "slurp": ["src", "path"],
    "find": ["paths"],
}
# Commands the real module skips in check mode unless told otherwise.
COMMANDS = {"command", "shell", "script", "raw"}
TASK_KEYWORDS = {
    "name",
    "when",
    "loop",
    "loop_control",
    "register",
    "vars",
    "notify",
    "listen",
    "changed_when",
    "failed_when",
    "check_mode",
    "tags",
    "no_log",
    "delegate_to",
    "delegate_facts",
    "run_once",
    "ignore_errors",
    "until",
    "retries",
    "delay",
    "become",
    "become_user",
    "environment",
    "args",
    "diff",
    "any_errors_fatal",
    "throttle",
    "timeout",
    "async",
    "poll",
    "block",
    "rescue",
    "always",
    "module_defaults",
    "collections",
    "with_items",
    "with_dict",
    "ignore_unreachable",
}
ROOT_EXPR = "(freebsd_test_root ~ '/' ~ inventory_hostname)"
ROOT_VAR = "{{ " + ROOT_EXPR + " }}"
RECORD = ROOT_VAR + "/.freebsd-record.jsonl"


def short(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def task_module(task: dict[str, Any]) -> str | None:
    names = [k for k in task if k not in TASK_KEYWORDS and not k.startswith("with_")]
    return names[0] if names else None


def rooted(value: Any) -> Any:
    """A host path (string, templated string or list) moved under the host's root."""
    if isinstance(value, list):
        return [rooted(v) for v in value]
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", value, re.S)
    if whole and "{{" not in whole.group(1):
        # One expression: may be a list (find's paths) or a string.
        expr = whole.group(1)
        return (
            "{{ ([" + expr + "] | flatten | map('regex_replace', '^', " + ROOT_EXPR + ") | list)"
            " if (" + expr + ") is not string else (" + ROOT_EXPR + " ~ (" + expr + ")) }}"
        )
    return ROOT_VAR + value


def owner_record(task: dict[str, Any], module: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The owner/group a file task would set, recorded by a sibling task instead of
    applied (same loop and condition)."""
    owner = {k: args.pop(k) for k in ("owner", "group") if k in args}
    if not owner:
        return []
    sibling: dict[str, Any] = {
        "name": "Record owner and group",
        "vrstack_test.freebsd.standin": {
            "module": "owner:" + module,
            "args": {**owner, "path": args.get("dest", args.get("path"))},
            "record": RECORD,
        },
        "changed_when": False,
        "check_mode": False,
    }
    for key in ("when", "loop", "loop_control", "vars", "with_items"):
        if key in task:
            sibling[key] = task[key]
    return [sibling]


def rewrite_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [out for task in tasks or [] for out in rewrite_task(task)]


def rewrite_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("block", "rescue", "always"):
        if key in task:
            task[key] = rewrite_tasks(task[key])
    if "block" in task:
        return [task]
    module = task_module(task)
    if module is None:
        return [task]
    name = short(module)
    if name in CONTROL or task.get("delegate_to") in ("localhost", "127.0.0.1"):
        return [task]
    args = task.pop(module)
    if isinstance(args, str):  # free form: command: make -C ...
        args = {"_raw_params": args}
    args = dict(args or {})
    args.update(task.pop("args", None) or {})
    for key in ("become", "become_user"):
        task.pop(key, None)
    # A source tree copied to the host (copy src ending in /) is recorded, not copied:
    # thousands of files say nothing about FreeBSD and take most of a run's time.
    # So is a copy of a file the host's packages installed (remote_src): no package here.
    tree = name == "copy" and (str(args.get("src", "")).endswith("/") or args.get("remote_src"))
    if name in FILES and not tree:
        for key in FILES[name]:
            if key in args and not (name == "copy" and key == "src"):
                args[key] = rooted(args[key])
        if name == "file" and args.get("state") == "link" and "src" in args:
            args["src"] = rooted(args["src"])
            # The target may come from a stand-in (pip install into the venv).
            args["force"] = True
        task["ansible.builtin." + name] = args
        return [task, *owner_record(task, name, args)]
    # The SDN services' module: its FreeBSD part (rc.d script, rc.conf) done under the
    # host's root with the module's own renderer (vrstack_test.freebsd.sdn_service).
    if module in ("vrstack.cloud.sdn_service", "sdn_service"):
        task["vrstack_test.freebsd.sdn_service"] = {**args, "root": ROOT_VAR, "record": RECORD}
        return [task]
    if module in ("community.general.sysrc", "sysrc"):
        task["vrstack_test.freebsd.sysrc"] = {
            **{k: v for k, v in args.items() if k in ("name", "value", "state")},
            "path": rooted(args.get("path", "/etc/rc.conf")),
        }
        return [task]
    if module in ("ansible.posix.sysctl", "sysctl"):
        task["ansible.builtin.lineinfile"] = {
            "path": rooted(args.get("sysctl_file", "/etc/sysctl.conf")),
            "regexp": "^" + str(args["name"]) + "=",
            "line": str(args["name"]) + "=" + str(args["value"]),
            "create": True,
            "mode": "0644",
        }
        return [task]
    # A stand-in answers at once: waiting for a service that is not there is pointless.
    for key in ("until", "retries", "delay"):
        task.pop(key, None)
    skip = name in COMMANDS and task.get("check_mode") is not False
    skip = skip and not ({"creates", "removes"} & set(args))
    task["vrstack_test.freebsd.standin"] = {
        "module": module,
        "args": args,
        "record": RECORD,
        "skip_in_check": skip,
    }
    return [task]


def rewrite_file(path: Path) -> None:
    data = yaml.safe_load(path.read_text()) or []
    path.write_text(yaml.safe_dump(rewrite_tasks(data), sort_keys=False))


def build_collection(dest: Path) -> Path:
    """A copy of vrstack.cloud with rewritten task and handler files, and the stand-in."""
    coll = dest / "ansible_collections" / "vrstack" / "cloud"
    coll.mkdir(parents=True)
    for top in REPO.iterdir():
        if top.name != "roles" and not top.name.startswith("."):
            (coll / top.name).symlink_to(top)
    for role in sorted((REPO / "roles").iterdir()):
        for sub in role.iterdir():
            target = coll / "roles" / role.name / sub.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if sub.name in ("tasks", "handlers"):
                shutil.copytree(sub, target)
                for f in target.rglob("*.yml"):
                    rewrite_file(f)
            else:
                target.symlink_to(sub)
    action = dest / "ansible_collections" / "vrstack_test" / "freebsd" / "plugins" / "action"
    action.mkdir(parents=True)
    shutil.copy(HERE / "standin_action.py", action / "standin.py")
    shutil.copy(HERE / "sysrc_action.py", action / "sysrc.py")
    shutil.copy(HERE / "sdn_service_action.py", action / "sdn_service.py")
    return dest


# Roles whose FreeBSD side must play through outside check mode too. Other roles may
# parse output that only their real services print (the stand-ins print nothing):
# outside check mode their plays run with errors ignored, and the tasks that failed
# are reported as pending (test_roles_not_strict_apply). Check mode is strict for all.
STRICT_ROLES = {
    "prechecks",
    "common",
    "mariadb",
    "rabbitmq",
    "memcached",
    "openstack_venv",
    "sdn_package",
    "sdn_config",
    "sdn_control",
    "sdn_analytics",
    "vrouter",
    "keystone",
}
# Playbooks that check a running cloud rather than deploy it (pki.yml renews and then
# verifies the certificates; site.yml plays its role), and lifecycle playbooks that
# replay site.yml's roles, or take them away, on hosts named at run time.
NOT_STAGES = {
    "verify.yml",
    "smoke.yml",
    "destroy.yml",
    "pki.yml",
    "add-compute.yml",
    "remove-compute.yml",
    "upgrade.yml",
}


def play_roles(play: dict[str, Any]) -> set[str]:
    names = [
        r if isinstance(r, str) else r.get("role", r.get("name", ""))
        for r in play.get("roles") or []
    ]
    return {n.rsplit(".", 1)[-1] for n in names}


def plays(tolerate: bool = False) -> list[dict[str, Any]]:
    """The plays a deployment runs: site.yml's, with its imports expanded in order,
    then those of other stage playbooks that site.yml does not import (a new role's
    playbook is picked up here). Fact gathering is off: the harness gives the facts."""
    seen: set[str] = set(NOT_STAGES)
    out: list[dict[str, Any]] = []

    def follow(book: Path) -> None:
        seen.add(book.name)
        for play in yaml.safe_load(book.read_text()) or []:
            imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
            if imported:
                sub = REPO / "playbooks" / (imported.split(".")[-1].removesuffix(".yml") + ".yml")
                if sub.name not in seen:
                    follow(sub)
                continue
            play = dict(play, gather_facts=False)
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                if key in play:
                    play[key] = rewrite_tasks(play[key])
            if tolerate and not play_roles(play) <= STRICT_ROLES:
                play["ignore_errors"] = True
            out.append(play)

    follow(REPO / "playbooks" / "site.yml")
    for book in sorted((REPO / "playbooks").glob("*.yml")):
        if book.name not in seen:
            follow(book)
    return out


def facts_play(service_users: list[str]) -> dict[str, Any]:
    users = dict(FREEBSD_BASE_USERS)
    groups = dict(FREEBSD_BASE_GROUPS)
    for n, name in enumerate(service_users):
        users.setdefault(name, 900 + n)
        groups.setdefault(name, 900 + n)
    # The group vrstack.cloud.pki creates for the node key's readers (pki_group): its
    # getent task is only recorded here, so the servers' TLS entry point finds it in facts.
    groups.setdefault("vrstack", 899)
    passwd = {
        u: ["*", str(i), str(groups.get(u, i)), u, "/nonexistent", "/usr/sbin/nologin"]
        for u, i in users.items()
    }
    facts = {"ansible_" + k: v for k, v in FREEBSD_FACTS.items()}
    facts["ansible_getent_passwd"] = passwd
    facts["ansible_getent_group"] = {g: ["*", str(i), ""] for g, i in groups.items()}
    return {
        "name": "Facts of a FreeBSD 14 host",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Set the facts a FreeBSD host reports",
                "ansible.builtin.set_fact": {
                    **facts,
                    "ansible_hostname": "{{ inventory_hostname }}",
                    "cacheable": True,
                },
            }
        ],
    }


def service_user_names() -> list[str]:
    defaults = yaml.safe_load((REPO / "roles" / "common" / "defaults" / "main.yml").read_text())
    names: list[str] = []
    for users in (defaults.get("common_service_users") or {}).values():
        for user in users:
            if user["name"] not in names:
                names.append(user["name"])
    return names


@dataclass
class Run:
    returncode: int
    output: str
    workdir: Path

    def host_root(self, host: str) -> Path:
        return self.workdir / "root" / host

    def records(self, host: str) -> list[dict[str, Any]]:
        path = self.host_root(host) / ".freebsd-record.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def secrets(self) -> dict[str, str]:
        path = self.workdir / "secrets" / "secrets.yml"
        return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


class Play:
    """One ansible-playbook run of the stage playbooks for `hosts`, started at once;
    `wait()` gives its result (two can run side by side)."""

    def __init__(self, inventory: Path, workdir: Path, hosts: list[str], check: bool) -> None:
        self.workdir = workdir
        build_collection(workdir / "collections")
        for host in hosts:
            root = workdir / "root" / host
            for rel, text in FREEBSD_SEED.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_text(text)
            for rel in FREEBSD_DIRS:
                (root / rel).mkdir(parents=True, exist_ok=True)
        (workdir / "secrets").mkdir(mode=0o700)
        (workdir / "tmp").mkdir()
        book = workdir / "freebsd.yml"
        book.write_text(
            yaml.safe_dump(
                [facts_play(service_user_names()), *plays(tolerate=not check)],
                sort_keys=False,
            )
        )
        extra = {
            # Never reach a host of the inventory: every host is played on this machine.
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "freebsd_test_root": str(workdir / "root"),
            "vrstack_secrets_file": str(workdir / "secrets" / "secrets.yml"),
            # The stand-in's `date` prints nothing: the clock is a real host's matter.
            "prechecks_clock_max_skew": 10**12,
        }
        (workdir / "extra.json").write_text(json.dumps(extra))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(workdir / "collections"),
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"),
            ANSIBLE_REMOTE_TEMP=str(workdir / "tmp"),
            ANSIBLE_PIPELINING="1",
            # Roles loop over set differences: one hash seed keeps their order, and so
            # the golden record, the same from run to run.
            PYTHONHASHSEED="0",
        )
        cmd = [str(Path(sys.executable).with_name("ansible-playbook"))]
        cmd += ["--check"] if check else []
        cmd += ["-i", str(inventory), "-e", "@" + str(workdir / "extra.json")]
        # localhost: prechecks' fabric check runs there (the implicit localhost).
        cmd += ["--limit", ",".join([*hosts, "localhost"]), str(book)]
        self.log = workdir / "ansible.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
            )

    def wait(self, timeout: float = 1500) -> Run:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return Run(rc, self.log.read_text(), self.workdir)


def inventory_hosts(inventory: Path) -> list[str]:
    """The inventory's hosts whose fabric `os` is FreeBSD."""
    res = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory), "--list"],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # The fabric plugin puts each host in the group os_<its os>.
    groups = json.loads(res.stdout)
    return sorted({h for g, v in groups.items() if g.startswith("os_freebsd") for h in v["hosts"]})


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    out: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out
