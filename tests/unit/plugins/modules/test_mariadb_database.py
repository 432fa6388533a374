"""vrstack.cloud.mariadb_database's logic: the SQL it sends (reads only in check mode, TLS
or not, quoting) and what it makes of mysql's answer, with a fake client; main() with a
stand-in mysql is in test_module_main.py."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils.mariadb_database import (
    CLIENT,
    MariadbDatabaseError,
    database_sql,
    ensure,
    socket_for,
)


def call(answer: tuple[int, str, str], **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    sent: list[str] = []

    def run(cmd: list[str], sql: str) -> tuple[int, str, str]:
        assert cmd == CLIENT
        sent.append(sql)
        return answer

    args: dict[str, Any] = {
        "name": "keystone",
        "user": "keystone",
        "password": "pw'1",
        "host": "%",
        "tls": True,
        "check_mode": False,
        "socket_exists": True,
        **kwargs,
    }
    return ensure(run=run, **args), sent


def test_sql_with_tls_creates_and_alters_require_ssl() -> None:
    sql = database_sql("keystone", "keystone", "pw'1", "%", tls=True, apply=True)
    assert "CREATE DATABASE `keystone`;" in sql
    assert "CREATE USER 'keystone'@'%' IDENTIFIED BY 'pw''1' REQUIRE SSL;" in sql
    assert "ALTER USER 'keystone'@'%' IDENTIFIED BY 'pw''1';" in sql
    # An existing user without TLS is altered (and reported).
    assert "AND ssl_type <> 'ANY') THEN" in sql
    assert "ALTER USER 'keystone'@'%' REQUIRE SSL;" in sql
    assert "GRANT ALL PRIVILEGES ON `keystone`.* TO 'keystone'@'%';" in sql
    assert "AND Delete_history_priv = 'Y'" in sql
    for what in ("database", "user", "password", "tls", "privileges"):
        assert f"SET todo = CONCAT(todo, ' {what}');" in sql


def test_sql_without_tls_requires_none() -> None:
    sql = database_sql("keystone", "keystone", "pw", "%", tls=False, apply=True)
    assert "REQUIRE SSL" not in sql
    assert "AND ssl_type <> '') THEN" in sql
    assert "ALTER USER 'keystone'@'%' REQUIRE NONE;" in sql


def test_sql_in_check_mode_only_reads() -> None:
    sql = database_sql("keystone", "keystone", "pw", "%", tls=True, apply=False)
    for statement in ("CREATE ", "ALTER USER", "GRANT "):
        assert statement not in sql
    assert "SELECT IF(todo = '', 'ok', CONCAT('changed:', todo));" in sql


def test_quoting_of_password_and_host() -> None:
    sql = database_sql("nova", "nova", "a\\b'c", "10.%'", tls=True, apply=True)
    assert "IDENTIFIED BY 'a\\\\b''c'" in sql
    assert "'nova'@'10.%'''" in sql


@pytest.mark.parametrize(
    ("answer", "changed", "what", "msg"),
    [
        ((0, "ok\n", ""), False, [], "keystone: ok"),
        (
            (0, "changed: user privileges\n", ""),
            True,
            ["user", "privileges"],
            "keystone: changed: user privileges",
        ),
        ((0, "changed: tls\n", ""), True, ["tls"], "keystone: changed: tls"),
    ],
)
def test_answers(answer: tuple[int, str, str], changed: bool, what: list[str], msg: str) -> None:
    got, sent = call(answer)
    assert got == {"changed": changed, "what": what, "msg": msg}
    assert len(sent) == 1 and "CREATE DATABASE" in sent[0]


def test_check_mode_reads_and_reports() -> None:
    got, sent = call((0, "changed: database user privileges\n", ""), check_mode=True)
    assert got["changed"] and got["what"] == ["database", "user", "privileges"]
    assert "CREATE DATABASE" not in sent[0]


def test_check_mode_before_a_first_install() -> None:
    got, sent = call((1, "", "no server"), check_mode=True, socket_exists=False)
    assert got == {
        "changed": True,
        "what": ["database", "user", "privileges"],
        "msg": "keystone: would be created with MariaDB",
    }
    assert sent == []


def test_failure_hides_the_password() -> None:
    err = "ERROR 1064 near 'IDENTIFIED BY 'pw''1' REQUIRE SSL' and pw'1\n"
    with pytest.raises(MariadbDatabaseError) as exc:
        call((1, "", err))
    assert str(exc.value) == (
        "keystone: mysql failed (rc 1): ERROR 1064 near 'IDENTIFIED BY '********' "
        "REQUIRE SSL' and ********"
    )


def test_unexpected_answer() -> None:
    with pytest.raises(
        MariadbDatabaseError, match=r"^keystone: unexpected answer from the SQL: 'x'$"
    ):
        call((0, "x\n", ""))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Keystone"}, "name 'Keystone' must match"),
        ({"user": "key-stone"}, "user 'key-stone' must match"),
        ({"name": "a" * 65}, "name 'a{65}' must match"),
    ],
)
def test_bad_names_run_nothing(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(MariadbDatabaseError, match=f"^{message}"):
        call((0, "ok", ""), **kwargs)


def test_socket_per_os() -> None:
    assert socket_for("FreeBSD") == "/var/run/mysql/mysql.sock"
    assert socket_for("Linux") == "/run/mysqld/mysqld.sock"
