# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of vrstack.cloud.mariadb_database: a database and a user with all privileges
on it, in one call on the database node (what mariadb's tasks_from: database did in four
tasks). The SQL reads first and changes only what differs; it prints `ok` or
`changed: <what>`. The runner is passed in so the tests need no server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# SQL names that need no quoting (also the role's __mariadb_name_re).
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Columns of mysql.db that GRANT ALL PRIVILEGES ON db.* sets to 'Y'.
PRIVILEGES = [
    "Select",
    "Insert",
    "Update",
    "Delete",
    "Create",
    "Drop",
    "References",
    "Index",
    "Alter",
    "Create_tmp_table",
    "Lock_tables",
    "Create_view",
    "Show_view",
    "Create_routine",
    "Alter_routine",
    "Execute",
    "Event",
    "Trigger",
    "Delete_history",
]
# Root authenticates by its Unix identity over the socket: no password is passed around.
CLIENT = ["mysql", "--batch", "--skip-column-names", "--user=root"]
SOCKETS = {"FreeBSD": "/var/run/mysql/mysql.sock"}
DEFAULT_SOCKET = "/run/mysqld/mysqld.sock"

Runner = Callable[[list[str], str], "tuple[int, str, str]"]


class MariadbDatabaseError(Exception):
    """A bad name or a failed SQL run."""


def literal(value: str) -> str:
    """A value inside a SQL string literal: backslashes escaped, quotes doubled."""
    return value.replace("\\", "\\\\").replace("'", "''")


def socket_for(system: str) -> str:
    return SOCKETS.get(system, DEFAULT_SOCKET)


def database_sql(name: str, user: str, password: str, host: str, tls: bool, apply: bool) -> str:
    """The SQL; without `apply` it only reads (check mode) and still says what it would do."""
    pw, h = literal(password), literal(host)
    require = "SSL" if tls else "NONE"
    ssl_type = "ANY" if tls else ""
    who = f"'{user}'@'{h}'"

    def do(statement: str) -> str:
        return f"    {statement}\n" if apply else ""

    privs = "".join(f"                   AND {p}_priv = 'Y'\n" for p in PRIVILEGES)
    return (
        "DELIMITER //\n"
        "BEGIN NOT ATOMIC\n"
        "  DECLARE todo VARCHAR(200) DEFAULT '';\n"
        "  IF NOT EXISTS (SELECT 1 FROM information_schema.SCHEMATA\n"
        f"                 WHERE SCHEMA_NAME = '{name}') THEN\n"
        "    SET todo = CONCAT(todo, ' database');\n"
        + do(f"CREATE DATABASE `{name}`;")
        + "  END IF;\n"
        "  IF NOT EXISTS (SELECT 1 FROM mysql.global_priv\n"
        f"                 WHERE User = '{user}' AND Host = '{h}') THEN\n"
        "    SET todo = CONCAT(todo, ' user');\n"
        + do(f"CREATE USER {who} IDENTIFIED BY '{pw}' REQUIRE {require};")
        + f"  ELSEIF (SELECT JSON_SEARCH(Priv, 'one', PASSWORD('{pw}')) IS NULL\n"
        "          FROM mysql.global_priv\n"
        f"          WHERE User = '{user}' AND Host = '{h}') THEN\n"
        "    SET todo = CONCAT(todo, ' password');\n"
        + do(f"ALTER USER {who} IDENTIFIED BY '{pw}';")
        + "  END IF;\n"
        "  -- TLS required (ssl_type ANY) or not (''), as the tls option says.\n"
        "  IF EXISTS (SELECT 1 FROM mysql.user\n"
        f"             WHERE User = '{user}' AND Host = '{h}'\n"
        f"               AND ssl_type <> '{ssl_type}') THEN\n"
        "    SET todo = CONCAT(todo, ' tls');\n"
        + do(f"ALTER USER {who} REQUIRE {require};")
        + "  END IF;\n"
        "  IF NOT EXISTS (SELECT 1 FROM mysql.db\n"
        f"                 WHERE Db = '{name}' AND User = '{user}'\n"
        f"                   AND Host = '{h}'\n" + privs + "                ) THEN\n"
        "    SET todo = CONCAT(todo, ' privileges');\n"
        + do(f"GRANT ALL PRIVILEGES ON `{name}`.* TO {who};")
        + "  END IF;\n"
        "  SELECT IF(todo = '', 'ok', CONCAT('changed:', todo));\n"
        "END //\n"
    )


def ensure(
    *,
    name: str,
    user: str,
    password: str,
    host: str,
    tls: bool,
    check_mode: bool,
    socket_exists: bool,
    run: Runner,
) -> dict[str, Any]:
    for kind, value in (("name", name), ("user", user)):
        if not NAME.match(value):
            raise MariadbDatabaseError(f"{kind} {value!r} must match {NAME.pattern}")
    # Before a first install in check mode there is no server to ask.
    if check_mode and not socket_exists:
        return {
            "changed": True,
            "what": ["database", "user", "privileges"],
            "msg": f"{name}: would be created with MariaDB",
        }
    sql = database_sql(name, user, password, host, tls, apply=not check_mode)
    rc, out, err = run(CLIENT, sql)
    if rc != 0:
        # mysql quotes the statement near an error: never show the password.
        text = (err or out).strip()
        for secret in {password, literal(password)} - {""}:
            text = text.replace(secret, "********")
        raise MariadbDatabaseError(f"{name}: mysql failed (rc {rc}): {text}")
    said = out.strip()
    if said == "ok":
        return {"changed": False, "what": [], "msg": f"{name}: ok"}
    if not said.startswith("changed:"):
        raise MariadbDatabaseError(f"{name}: unexpected answer from the SQL: {said[:200]!r}")
    return {"changed": True, "what": said[len("changed:") :].split(), "msg": f"{name}: {said}"}
