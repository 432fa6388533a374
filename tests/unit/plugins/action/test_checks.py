"""vrstack.cloud.checks (issue 7): many checks in one task. Every failed check's message
is reported, not only the first; an `ok` that is not a bool is refused with its index;
nothing changes, in check mode too, and no host is contacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.vrstack.cloud.plugins.action.checks import failed_messages

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("checks", "failed"),
    [
        ([{"ok": True, "msg": "a"}], []),
        ([{"ok": False, "msg": "a"}], ["a"]),
        (
            [{"ok": False, "msg": "a"}, {"ok": True, "msg": "b"}, {"ok": False, "msg": "c"}],
            ["a", "c"],
        ),
    ],
)
def test_every_failed_message_in_order(checks: list[dict[str, Any]], failed: list[str]) -> None:
    assert failed_messages(checks) == failed


@pytest.mark.parametrize(
    ("checks", "error"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        ("x", "non-empty list"),
        ([{"ok": True, "msg": "a"}, "x"], r"checks\[1\] must be a dict"),
        ([{"ok": "yes", "msg": "a"}], r"checks\[0\]\.ok must be a bool.*str 'yes'"),
        ([{"ok": True, "msg": "a"}, {"ok": 1, "msg": "b"}], r"checks\[1\]\.ok must be a bool"),
        ([{"ok": True}], r"checks\[0\] needs both ok and msg"),
        ([{"msg": "a"}], r"checks\[0\] needs both ok and msg"),
        ([{"ok": True, "msg": 3}], r"checks\[0\]\.msg must be a string"),
        ([{"ok": True, "msg": "a", "that": "x"}], r"checks\[0\] has unknown keys: that"),
    ],
)
def test_malformed_checks_are_refused(checks: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        failed_messages(checks)


def play(tmp_path: Path, tasks: list[dict[str, Any]], *args: str) -> tuple[int, dict[str, Any]]:
    """The return code and the last task's result of a play on an unreachable host: the
    action must not need a connection."""
    playbook = [{"hosts": "nowhere", "gather_facts": False, "tasks": tasks}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook))
    # An address nobody answers on, and ssh: a connection attempt would fail the play.
    (tmp_path / "inv.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {"nowhere": {"ansible_host": "192.0.2.1", "answer": 42}}}})
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_TIMEOUT="2",
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(tmp_path / "inv.yml"),
            str(tmp_path / "play.yml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    last = report["plays"][0]["tasks"][-1]
    return done.returncode, last["hosts"]["nowhere"]


CHECKS = {
    "name": "Check",
    "vrstack.cloud.checks": {
        "checks": [
            {"ok": "{{ answer == 42 }}", "msg": "{{ inventory_hostname }}: not 42"},
            {"ok": "{{ answer > 100 }}", "msg": "{{ inventory_hostname }}: {{ answer }} <= 100"},
            {"ok": "{{ answer is defined }}", "msg": "undefined"},
            {"ok": "{{ answer < 0 }}", "msg": "{{ answer }} >= 0"},
        ]
    },
}


@pytest.mark.parametrize("mode", [[], ["--check", "--diff"]])
def test_play_fails_listing_every_failed_check(tmp_path: Path, mode: list[str]) -> None:
    rc, result = play(tmp_path, [CHECKS], *mode)
    assert rc == 2
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["failed_checks"] == ["nowhere: 42 <= 100", "42 >= 0"]
    assert result["msg"] == "nowhere: 42 <= 100\n42 >= 0"


def test_play_passes_when_every_check_holds(tmp_path: Path) -> None:
    task = {
        "name": "Check",
        "vrstack.cloud.checks": {
            "checks": [{"ok": "{{ answer == 42 }}", "msg": "not 42"}],
            "success_msg": "fine",
        },
    }
    rc, result = play(tmp_path, [task], "--check")
    assert rc == 0, result
    assert result.get("failed", False) is False
    assert result["changed"] is False
    assert result["failed_checks"] == []
    assert result["msg"] == "fine"


def test_play_refuses_an_untemplated_check(tmp_path: Path) -> None:
    # Without the braces the expression is a non-empty string, which an assert-like
    # truthiness test would have taken as passing.
    task = {
        "name": "Check",
        "vrstack.cloud.checks": {
            "checks": [
                {"ok": "{{ true }}", "msg": "a"},
                {"ok": "answer == 0", "msg": "b"},
            ]
        },
    }
    rc, result = play(tmp_path, [task])
    assert rc == 2
    assert result["failed"] is True
    assert "checks[1].ok must be a bool" in result["msg"]


def test_play_refuses_unknown_options(tmp_path: Path) -> None:
    task = {
        "name": "Check",
        "vrstack.cloud.checks": {"checks": [{"ok": True, "msg": "a"}], "that": ["x"]},
    }
    rc, result = play(tmp_path, [task])
    assert rc == 2
    assert "Invalid options" in result["msg"] and "that" in result["msg"]


def test_play_shows_the_success_message_unless_quiet(tmp_path: Path) -> None:
    task = {
        "name": "Check",
        "vrstack.cloud.checks": {
            "checks": [{"ok": True, "msg": "a"}],
            "success_msg": "a note for the operator",
            "quiet": "{{ answer != 42 }}",
        },
    }
    rc, result = play(tmp_path, [task])
    assert rc == 0
    assert result["_ansible_verbose_always"] is True
    assert result["msg"] == "a note for the operator"
    task["vrstack.cloud.checks"]["quiet"] = True
    rc, result = play(tmp_path, [task])
    assert rc == 0
    assert "_ansible_verbose_always" not in result
