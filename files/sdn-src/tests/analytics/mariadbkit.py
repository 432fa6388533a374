"""A private MariaDB server for the tests: its own data directory, socket and loopback
port, started once per test session and killed at the end. Each test gets its own
database (and the collectors a user that may only use it)."""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pymysql

from vrstack.analytics.store_mariadb import MariaDBStore, Server

USER, PASSWORD = "collector", "collector-test-password"
MISSING = (
    "mariadbd not found: the MariaDB store tests need the "
    "mariadb-server-core package (run `make bootstrap`)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MariaDB:
    """`mariadbd` on 127.0.0.1:port and a socket in `root`, run as this user."""

    def __init__(self, root: Path) -> None:
        found = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        if found is None:
            raise RuntimeError(MISSING)
        self.mariadbd = found
        self.root = root
        self.datadir = root / "data"
        self.socket = str(root / "mysqld.sock")
        self.port = _free_port()
        self.log = root / "mariadbd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    def _install(self) -> None:
        """The system tables, as mariadb-install-db makes them (it needs a client tool
        that is not in mariadb-server-core): root may log in on the socket with no password."""
        share = Path("/usr/share/mysql")
        sql = "CREATE DATABASE IF NOT EXISTS mysql;\nUSE mysql;\n" + "".join(
            (share / f).read_text()
            for f in ("mysql_system_tables.sql", "mysql_system_tables_data.sql")
        )
        self.datadir.mkdir()
        subprocess.run(
            [
                self.mariadbd,
                "--no-defaults",
                "--bootstrap",
                f"--datadir={self.datadir}",
                "--user=root",
                "--innodb-buffer-pool-size=64M",
                "--skip-grant-tables",
            ],
            input=sql.encode(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _certificates(self) -> None:
        """A CA and a certificate for 127.0.0.1 (the server's TLS), and another CA."""
        r = self.root

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

        for ca in ("ca", "other-ca"):
            openssl(
                *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", f"/CN=vrstack test {ca}", "-keyout", f"{r}/{ca}.key"),
                *("-out", f"{r}/{ca}.pem"),
            )
        (r / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
            *("-keyout", f"{r}/server.key", "-out", f"{r}/server.csr"),
        )
        openssl(
            *("x509", "-req", "-in", f"{r}/server.csr", "-CA", f"{r}/ca.pem"),
            *("-CAkey", f"{r}/ca.key", "-CAcreateserial", "-days", "2"),
            *("-extfile", f"{r}/san.ext", "-out", f"{r}/server.pem"),
        )

    def start(self, timeout: float = 60.0) -> None:
        self._install()
        self._certificates()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.mariadbd,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--socket={self.socket}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--pid-file={self.root / 'mariadbd.pid'}",
                    "--user=root",
                    "--innodb-buffer-pool-size=64M",
                    "--skip-name-resolve",
                    f"--ssl-ca={self.root / 'ca.pem'}",
                    f"--ssl-cert={self.root / 'server.pem'}",
                    f"--ssl-key={self.root / 'server.key'}",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.log.read_text()[-3000:]}")
            try:
                self.root_sql("SELECT 1")
                return
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"mariadbd did not answer in {timeout} s: {self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def root_sql(self, *statements: str) -> None:
        db = pymysql.connect(unix_socket=self.socket, user="root", password="", connect_timeout=2)
        try:
            with db.cursor() as cur:
                for stmt in statements:
                    cur.execute(stmt)
        finally:
            db.close()

    def new_database(self, user: str = USER, require_tls: bool = False) -> Server:
        """A fresh database and a login to it over TCP on loopback (`require_tls`: a
        user the server refuses without TLS)."""
        name = f"analytics{next(self._names)}"
        require = " REQUIRE SSL" if require_tls else ""
        self.root_sql(
            f"CREATE DATABASE {name}",
            f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'{require}",
            f"GRANT ALL ON {name}.* TO '{user}'@'127.0.0.1'",
        )
        return Server(database=name, user=user, password=PASSWORD, host="127.0.0.1", port=self.port)


def store(server: Server, query_timeout: float = 10.0) -> MariaDBStore:
    return MariaDBStore(server, query_timeout)
