"""Print whether nova's API and cell databases need `nova-manage ... sync`, as JSON.

Run with the virtualenv's python as root: db_state.py /etc/nova/nova.conf.
Compares each database's alembic revision with the head of nova's migrations, so the
role runs a sync only when one is due (`nova-manage` has no `--check`).
"""

import json
import sys

from alembic.script import ScriptDirectory
from nova import config
from nova.db import migration


def main(conf_file: str) -> None:
    config.parse_args([sys.argv[0], "--config-file", conf_file], init_rpc=False)
    state = {}
    for database in ("api", "main"):
        head = ScriptDirectory.from_config(
            migration._find_alembic_conf(database)
        ).get_current_head()
        current = migration.db_version(database=database)
        state[database] = {"current": current, "head": head, "due": current != head}
    print(json.dumps(state))


if __name__ == "__main__":
    main(sys.argv[1])
