"""tasks_from verify of mariadb and rabbitmq after main in the same run (issue 7, helper D):
a single node that main probed is not probed again (one skipped include); a cluster, a
failed or missing probe, or the switch off still runs every check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_rerun_conditions import runs

MARIADB = (
    "mariadb",
    "verify.yml",
    "Check MariaDB answers (and, with Galera, is a Synced member of a full cluster)",
)
RABBITMQ = (
    "rabbitmq",
    "verify.yml",
    "Check RabbitMQ answers (and, with several nodes, runs them in one cluster)",
)
PROBED = {"attempts": 1, "changed": False, "failed": False}


@pytest.mark.parametrize(
    ("check", "probe"), [(MARIADB, "__mariadb_probe"), (RABBITMQ, "__rabbitmq_probe")]
)
def test_a_single_node_probed_by_main_is_not_probed_again(
    check: tuple[str, str, str], probe: str
) -> None:
    assert runs(*check, **{probe: PROBED}) is False


@pytest.mark.parametrize(
    ("check", "probe"), [(MARIADB, "__mariadb_probe"), (RABBITMQ, "__rabbitmq_probe")]
)
@pytest.mark.parametrize(
    "extra",
    [
        {},  # verify without main
        {"probe": {"failed": True}},
        {"probe": {"skipped": True, "changed": False}},
        {"probe": PROBED, "switch": False},
        {"probe": PROBED, "shortcuts": False},
    ],
)
def test_verify_probes_otherwise(
    check: tuple[str, str, str], probe: str, extra: dict[str, Any]
) -> None:
    role = check[0]
    values: dict[str, Any] = {}
    if "probe" in extra:
        values[probe] = extra["probe"]
    if "switch" in extra:
        values[f"{role}_verify_trust_main"] = extra["switch"]
    if "shortcuts" in extra:
        values["vrstack_rerun_shortcuts"] = extra["shortcuts"]
    assert runs(*check, **values) is True


def test_clusters_are_always_checked() -> None:
    assert runs(*MARIADB, __mariadb_probe=PROBED, __mariadb_galera=True) is True
    assert runs(*RABBITMQ, __rabbitmq_probe=PROBED, __rabbitmq_nodes=["a", "b", "c"]) is True
