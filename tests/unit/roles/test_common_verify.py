"""common's `tasks_from: verify` (issue 7: one read and one check task a host) run on
this machine in check mode, posing as a lab host: what it finds right passes, and
each thing it finds wrong is reported with its own message, all in one failure."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
HOST = "lab-cmp1"
ENTRIES = [
    "198.18.1.16 lab-ctl1",
    "198.18.1.17 lab-cmp1",
    "198.18.2.16 lab-ctl2",
    "198.18.2.17 lab-cmp2",
]
MARK = "# {} vrstack fabric hosts (managed by vrstack.cloud.common)"


def verify(tmp_path: Path, extra: dict[str, Any]) -> tuple[int, dict[str, Any], list[str]]:
    """Return code, the check task's result and the task names that ran."""
    (tmp_path / "play.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": HOST,
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Verify",
                            "ansible.builtin.include_role": {
                                "name": "vrstack.cloud.common",
                                "tasks_from": "verify",
                            },
                        }
                    ],
                }
            ]
        )
    )
    variables = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        **extra,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(ROOT / "inventories" / "lab"),
            "--limit",
            HOST,
            "--check",
            "-e",
            f"@{tmp_path / 'vars.json'}",
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.stdout, done.stderr
    tasks = json.loads(done.stdout)["plays"][0]["tasks"]
    names = [t["task"]["name"] for t in tasks]
    return done.returncode, tasks[-1]["hosts"][HOST], names


def me() -> pwd.struct_passwd:
    return pwd.getpwnam(getpass.getuser())


def matching(tmp_path: Path, hosts_block: list[str]) -> dict[str, Any]:
    """Settings this machine satisfies: its own user, one sysctl as it is now."""
    user = me()
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{line}\n" for line in hosts_block))
    return {
        "common_service_users": {
            "compute": [{"name": user.pw_name, "home": user.pw_dir, "shell": user.pw_shell}]
        },
        "common_sysctl_debian": {"all": {"net.ipv4.ip_forward": int(forward)}},
        "common_sysctl_container_prefixes": ["net."],
        "common_hosts_file": str(hosts),
        "common_time_sync": False,
    }


def block(entries: list[str]) -> list[str]:
    return [MARK.format("BEGIN"), *entries, MARK.format("END")]


@pytest.mark.skipif(not Path("/proc/sys/net/ipv4/ip_forward").exists(), reason="Linux only")
def test_what_is_right_passes_in_one_read_and_one_check(tmp_path: Path) -> None:
    rc, result, names = verify(
        tmp_path, {**matching(tmp_path, block(ENTRIES)), "common_manage_hosts": False}
    )
    assert rc == 0, result
    assert result["failed_checks"] == []
    # The include, the entry point's validation, the facts (their once-a-run include,
    # then gather when missing and decide: the first time in this run), one read and
    # one check.
    assert len(names) == 7, names
    assert names[2] == "vrstack.cloud.common : Read host facts (once a run)", names
    assert names[-2].startswith("vrstack.cloud.common : Read ")
    assert names[-1].startswith("vrstack.cloud.common : Check the fabric hosts block")


@pytest.mark.skipif(not Path("/proc/sys/net/ipv4/ip_forward").exists(), reason="Linux only")
def test_every_wrong_thing_is_reported_with_its_message(tmp_path: Path) -> None:
    settings = matching(tmp_path, block(ENTRIES[:2]))
    forward = settings["common_sysctl_debian"]["all"]["net.ipv4.ip_forward"]
    settings["common_sysctl_debian"]["all"]["net.ipv4.ip_forward"] = 1 - forward
    settings["common_service_users"]["compute"].append({"name": "vrstack-no-such-user"})
    settings["common_manage_hosts"] = True
    rc, result, _names = verify(tmp_path, settings)
    assert rc == 2
    failed = result["failed_checks"]
    assert len(failed) == 4, failed
    assert "does not hold exactly one vrstack block" in failed[0]
    # The lab's names do not resolve on this machine.
    assert "resolves fabric names otherwise" in failed[1] and "- lab-ctl2" in failed[1]
    assert "service user vrstack-no-such-user " in failed[2]
    assert getpass.getuser() + "," not in failed[2]
    assert (
        f"sysctl net.ipv4.ip_forward={forward}, expected net.ipv4.ip_forward={1 - forward}"
        in failed[3]
    )


@pytest.mark.skipif(not Path("/proc/sys/net/ipv4/ip_forward").exists(), reason="Linux only")
def test_a_user_with_another_shell_and_the_right_block(tmp_path: Path) -> None:
    settings = matching(tmp_path, block(ENTRIES))
    settings["common_service_users"]["compute"][0]["shell"] = "/bin/vrstack-other-shell"
    settings["common_manage_hosts"] = True
    rc, result, _names = verify(tmp_path, settings)
    assert rc == 2
    failed = result["failed_checks"]
    # The block is right; only resolution (lab names) and the user's shell are not.
    assert len(failed) == 2, failed
    assert "resolves fabric names otherwise" in failed[0]
    assert f"service user {getpass.getuser()} " in failed[1]
