"""Print the hosts mapped into a cell (nova_api's host_mappings), as a JSON list.

Run with nova's virtualenv python as root: python -c "$(cat host_mappings.py)" nova.conf.
The same set `nova-manage cell_v2 list_hosts` prints, read with one query through PyMySQL
(which nova uses too) instead of starting nova-manage (about 4.5 s on a rerun). The
connection is [api_database] connection of nova.conf: its user, password and TLS CA.
"""

import configparser
import json
import re
import sys
from typing import Any
from urllib.parse import parse_qs, unquote

# Read as SQLAlchemy reads it (the password may hold a "/", which Jinja's urlencode keeps).
_URL = re.compile(
    r"^(?P<scheme>[\w+]+)://"
    r"(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?"
    r"(?:\[(?P<ipv6>[^/?]+)\]|(?P<host>[^/:?]+))?"
    r"(?::(?P<port>[^/?]*))?"
    r"(?:/(?P<database>[^?]*))?"
    r"(?:\?(?P<query>.*))?$"
)


def connect_args(url: str) -> dict[str, Any]:
    """PyMySQL's connect() arguments for an oslo.db URL (mysql+pymysql://u:p@h[:port]/db?...)."""
    found = _URL.match(url)
    if not found or not found["scheme"].startswith("mysql"):
        raise ValueError(f"not a MySQL URL: {url.split('://')[0]}://")
    query = parse_qs(found["query"] or "")
    args: dict[str, Any] = {
        "host": found["ipv6"] or found["host"],
        "port": int(found["port"] or 3306),
        "user": unquote(found["user"] or ""),
        "password": unquote(found["password"] or ""),
        "database": found["database"] or "",
        "charset": query.get("charset", ["utf8mb4"])[0],
    }
    # As SQLAlchemy's PyMySQL dialect passes ssl_ca: the server checked against that CA.
    if "ssl_ca" in query:
        args["ssl"] = {"ca": query["ssl_ca"][0]}
    return args


def api_database_url(conf_file: str) -> str:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    with open(conf_file, encoding="utf-8") as conf:
        parser.read_file(conf)
    return parser.get("api_database", "connection")


def mapped_hosts(conf_file: str) -> list[str]:
    import pymysql  # nova's driver, in the same virtualenv

    conn = pymysql.connect(**connect_args(api_database_url(conf_file)), connect_timeout=10)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT host FROM host_mappings")
            return sorted(str(row[0]) for row in cursor.fetchall())
    finally:
        conn.close()


if __name__ == "__main__":
    print(json.dumps(mapped_hosts(sys.argv[1])))
