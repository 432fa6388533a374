"""A rerun compares RabbitMQ's accounts (and tasks_from retire its retired users) with the
copy of RabbitMQ's records kept in the node's database directory instead of starting
rabbitmqctl (issue 7, helper D): each `when` is templated for the lab's first messaging
node with the copy as slurp returns it."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra
from test_rerun_conditions import runs

ROLE_TASKS = Path(__file__).resolve().parents[3] / "roles" / "rabbitmq" / "tasks"
INCLUDE = ("rabbitmq", "main.yml", "Set the accounts unless they are as last set")
RETIRE = ("rabbitmq", "retire.yml", "Delete the retired users unless RabbitMQ records them gone")


def render(**extra: Any) -> infra.Render:
    return infra.Render("lab-ctl1", ["rabbitmq"], **extra)


def digests() -> tuple[str, str]:
    r = render()
    return (
        str(r.var("__rabbitmq_accounts_digest | to_json")),
        str(r.var("__rabbitmq_retired_digest | to_json")),
    )


def copy(records: dict[str, str] | None) -> dict[str, Any]:
    """__rabbitmq_record as slurp registers it: the file's content, or a failure."""
    if records is None:
        return {"__rabbitmq_record": {"failed": False, "msg": "file not found"}}
    text = json.dumps(records).encode()
    return {"__rabbitmq_record": {"content": base64.b64encode(text).decode()}}


def test_the_copy_lives_in_the_node_database_directory() -> None:
    path = render().var("__rabbitmq_record_file")
    assert path == "/var/lib/rabbitmq/mnesia/rabbit@lab-ctl1/vrstack_records.json"


def test_a_rerun_with_the_same_accounts_does_not_ask_rabbitmq() -> None:
    accounts, retired = digests()
    same = copy({"vrstack_accounts": accounts, "vrstack_retired": retired})
    assert runs(*INCLUDE, **same) is False
    assert runs(*RETIRE, **same) is False


def test_a_missing_or_other_copy_asks_rabbitmq() -> None:
    accounts = digests()[0]
    assert runs(*INCLUDE, **copy(None)) is True
    assert runs(*INCLUDE, **copy({"vrstack_accounts": '"other"'})) is True
    # The copy kept before the retired users were recorded gone.
    assert runs(*RETIRE, **copy({"vrstack_accounts": accounts})) is True
    # Switched off: slurp is skipped and the include asks RabbitMQ.
    assert runs(*INCLUDE, __rabbitmq_record={"skipped": True}) is True


def test_rabbitmq_own_record_wins_over_the_copy() -> None:
    """Once accounts.yml read RabbitMQ, its list decides, not the copy."""
    accounts, retired = digests()
    params = [{"name": "vrstack_accounts", "value": '"other"'}]
    both = copy({"vrstack_accounts": accounts, "vrstack_retired": retired}) | {
        "__rabbitmq_parameters": {"stdout": json.dumps(params)}
    }
    assert render(**both).var("__rabbitmq_recorded") == {"vrstack_accounts": '"other"'}
    assert runs(*RETIRE, **both) is True


def merged_expression() -> str:
    """The expression record_copy.yml's set_fact gives __rabbitmq_record_merged."""
    tasks = yaml.safe_load((ROLE_TASKS / "record_copy.yml").read_text())
    value = next(t["ansible.builtin.set_fact"]["__rabbitmq_record_merged"] for t in tasks
                 if "ansible.builtin.set_fact" in t)  # fmt: skip
    return value.strip().removeprefix("{{").removesuffix("}}").strip()


def test_the_new_copy_keeps_the_other_record() -> None:
    accounts, retired = digests()
    expr = f"({merged_expression()}) | to_json"
    r = render(
        **copy({"vrstack_accounts": '"old"', "vrstack_retired": retired}),
        __rabbitmq_record_new={"vrstack_accounts": accounts},
    )
    assert json.loads(r.var(expr)) == {"vrstack_accounts": accounts, "vrstack_retired": retired}


def test_a_fresh_node_gets_both_records_in_one_run() -> None:
    """A new node: accounts.yml reads RabbitMQ (nothing yet) and writes the accounts' record,
    then retire_users.yml writes the retired one: the copy must hold both, or the next run
    finds the accounts' record missing and writes the copy again (not idempotent)."""
    accounts, retired = digests()
    expr = f"({merged_expression()}) | to_json"
    read = {"__rabbitmq_parameters": {"stdout": "[]"}, **copy(None)}
    first = json.loads(
        render(**read, __rabbitmq_record_new={"vrstack_accounts": accounts}).var(expr)
    )
    second = json.loads(
        render(
            **read,
            __rabbitmq_record_merged=first,
            __rabbitmq_record_new={"vrstack_retired": retired},
        ).var(expr)
    )
    assert second == {"vrstack_accounts": accounts, "vrstack_retired": retired}
    assert runs(*INCLUDE, **copy(second)) is False
    assert runs(*RETIRE, **copy(second)) is False
