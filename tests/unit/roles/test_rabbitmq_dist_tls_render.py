"""RabbitMQ's Erlang distribution over TLS (issue 11): rabbitmq-env.conf and
inter_node_tls.config as the rabbitmq role renders them for the lab's hosts (Debian and,
with vrstack_os=freebsd14, FreeBSD paths), the switch rabbitmq_dist_tls, and the
expression that tells whether a run changes the distribution protocol (which stops every
messaging node, the first one last, before the new configuration is written)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_infra_tls_render import CERT_STAT, ROOT, Render

ROLE = ROOT / "roles" / "rabbitmq"
PKI = "/etc/vrstack/pki"


# ---- a reader for the Erlang terms of inter_node_tls.config ---------------------------

TOKEN = re.compile(r'\s*(?:(%[^\n]*)|([\[\]{},.])|"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([a-z][\w@]*))')


def erlang_term(text: str) -> Any:
    """The one term of a file:consult()-style file: lists, tuples (as tuples), strings
    (as str), atoms (as ('atom', name)); true/false as bool. Fails on anything else."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m and m.end() > pos, f"not an Erlang term at: {text[pos : pos + 40]!r}"
        pos = m.end()
        comment, punct, string, quoted, atom = m.groups()
        if comment is not None:
            continue
        if punct is not None:
            tokens.append(("p", punct))
        elif string is not None:
            tokens.append(("s", string))
        else:
            tokens.append(("a", quoted if quoted is not None else atom))
    assert tokens[-1] == ("p", "."), "a term file ends with a full stop"
    items = iter(tokens[:-1])

    def parse(tok: tuple[str, str]) -> Any:
        kind, value = tok
        if kind == "s":
            return value
        if kind == "a":
            return {"true": True, "false": False}.get(value, ("atom", value))
        close = {"[": "]", "{": "}"}[value]
        out: list[Any] = []
        nxt = next(items)
        while nxt != ("p", close):
            out.append(parse(nxt))
            nxt = next(items)
            if nxt == ("p", ","):
                nxt = next(items)
        return out if value == "[" else tuple(out)

    term = parse(next(items))
    assert next(items, None) is None, "more than one term"
    return term


def proplist(items: list[Any]) -> dict[str, Any]:
    out = {}
    for item in items:
        assert isinstance(item, tuple) and len(item) == 2 and item[0][0] == "atom", item
        key = item[0][1]
        assert key not in out, f"{key} twice"
        value = item[1]
        out[key] = value[1] if isinstance(value, tuple) and value[0] == "atom" else value
    return out


def test_the_term_reader_refuses_what_erlang_would() -> None:
    assert erlang_term("[{a, \"b\"}, {'c d', true}].") == [
        (("atom", "a"), "b"),
        (("atom", "c d"), True),
    ]
    with pytest.raises(AssertionError):
        erlang_term("[{a, b}]")  # no full stop
    with pytest.raises(AssertionError):
        erlang_term("[{a, b}]. [].")
    with pytest.raises(AssertionError):
        erlang_term("[{a, 1.5}].")


# ---- the rendered files ---------------------------------------------------------------


def _render(name: str, **extra: Any) -> str:
    return Render("lab-ctl1", ["rabbitmq"], pki_service_cert=CERT_STAT, **extra).template(
        "rabbitmq", name
    )


def sourced(text: str, tmp_path: Path) -> dict[str, str]:
    """What a POSIX shell sees after sourcing the file (as RabbitMQ's scripts do)."""
    path = tmp_path / "rabbitmq-env.conf"
    path.write_text(text)
    names = ["NODENAME", "SERVER_ADDITIONAL_ERL_ARGS", "CTL_ERL_ARGS"]
    script = f". {path}; " + "; ".join(f'printf "%s\\n" "${{{n}-<unset>}}"' for n in names)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    return dict(zip(names, out.stdout.splitlines(), strict=True))


@pytest.mark.parametrize(
    ("os", "conf_dir"),
    [("debian12", "/etc/rabbitmq"), ("freebsd14", "/usr/local/etc/rabbitmq")],
)
def test_server_and_cli_tools_get_the_same_tls_distribution(
    os: str, conf_dir: str, tmp_path: Path
) -> None:
    env = sourced(_render("rabbitmq-env.conf.j2", vrstack_os=os), tmp_path)
    want = f"-proto_dist inet_tls -ssl_dist_optfile {conf_dir}/inter_node_tls.config"
    assert env["SERVER_ADDITIONAL_ERL_ARGS"] == want
    # rabbitmqctl, rabbitmq-diagnostics and the role's commands read CTL_ERL_ARGS: a CLI
    # tool without it cannot reach a TLS node, even on a single one.
    assert env["CTL_ERL_ARGS"] == want
    assert env["NODENAME"] == "rabbit@lab-ctl1"
    r = Render("lab-ctl1", ["rabbitmq"], vrstack_os=os)
    assert r.var("__rabbitmq_dist_optfile") == f"{conf_dir}/inter_node_tls.config"


def test_options_file_verifies_both_ends_with_the_node_certificate() -> None:
    text = _render("inter_node_tls.config.j2")
    term = erlang_term(text)
    sides = proplist(term)
    assert set(sides) == {"server", "client"}
    server, client = proplist(sides["server"]), proplist(sides["client"])
    for side in (server, client):
        assert side["certfile"] == f"{PKI}/node.crt"
        assert side["keyfile"] == f"{PKI}/node.key"
        assert side["cacertfile"] == f"{PKI}/ca.crt"
        assert side["verify"] == "verify_peer"
        assert side["versions"] == [("atom", "tlsv1.3"), ("atom", "tlsv1.2")]
    # A peer or CLI tool without a certificate of the deployment CA is refused.
    assert server["fail_if_no_peer_cert"] is True
    assert "fail_if_no_peer_cert" not in client  # a server-side option only
    # A renewed certificate changes the file, which restarts the server.
    assert "%% c0ffee" in text.splitlines()


def test_the_pki_dir_is_the_roles_setting() -> None:
    sides = proplist(erlang_term(_render("inter_node_tls.config.j2", rabbitmq_pki_dir="/srv/p")))
    assert proplist(sides["server"])["keyfile"] == "/srv/p/node.key"


def test_off_is_the_plain_distribution_of_before(tmp_path: Path) -> None:
    for extra in ({"rabbitmq_dist_tls": False}, {"vrstack_infra_tls": False}):
        env = sourced(_render("rabbitmq-env.conf.j2", **extra), tmp_path)
        assert env["SERVER_ADDITIONAL_ERL_ARGS"] == "<unset>", extra
        assert env["CTL_ERL_ARGS"] == "<unset>", extra
        assert Render("lab-ctl1", ["rabbitmq"], **extra).var("__rabbitmq_dist_tls") is False
    # On by default, and on with AMQP's TLS.
    assert Render("lab-ctl1", ["rabbitmq"]).var("__rabbitmq_dist_tls") is True
    # AMQP over TLS stays when only the distribution is plain.
    conf = _render("rabbitmq.conf.j2", rabbitmq_dist_tls=False)
    assert "listeners.ssl.1 = " in conf


# ---- the tasks ------------------------------------------------------------------------


def _tasks(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def _task(tasks: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    return next(t for t in tasks if t["name"].startswith(prefix))


def test_options_file_is_written_only_with_tls_and_removed_without() -> None:
    tasks = _tasks("main.yml")
    loop = _task(tasks, "Configure RabbitMQ")["loop"]
    on = Render("lab-ctl1", ["rabbitmq"]).var(loop[3:-3])
    assert on == ["rabbitmq.conf", "rabbitmq-env.conf", "inter_node_tls.config"]
    off = Render("lab-ctl1", ["rabbitmq"], rabbitmq_dist_tls=False).var(loop[3:-3])
    assert off == ["rabbitmq.conf", "rabbitmq-env.conf"]
    remove = _task(tasks, "Remove the distribution's TLS options")
    assert remove["ansible.builtin.file"]["state"] == "absent"
    assert remove["when"] == "not __rabbitmq_dist_tls"
    # The rabbitmq user reads node.key through the pki group whenever either TLS is on.
    pki = _task(tasks, "Let RabbitMQ read the node certificate")
    assert "rabbitmq_tls | bool or __rabbitmq_dist_tls" in pki["when"]


def test_switch_stops_before_the_new_configuration_and_starts_the_first_node_first() -> None:
    tasks = _tasks("main.yml")
    names = [t["name"] for t in tasks]
    found = names.index("Read how the Erlang distribution is configured now")
    stop = names.index("Stop every messaging node to switch the Erlang distribution protocol")
    conf = names.index("Configure RabbitMQ")
    first = names.index("Start the first messaging node first after the switch")
    start = names.index("Enable and start RabbitMQ")
    # Stopped with the configuration they run (their CLI tools still match the nodes).
    assert found < stop < conf < first < start
    assert tasks[stop]["ansible.builtin.include_tasks"] == "dist_stop.yml"
    assert tasks[first]["delegate_to"] == "{{ __rabbitmq_nodes | first }}"
    stops = _task(_tasks("dist_stop.yml"), "Stop the messaging nodes")
    three = {"groups": {"messaging": ["m1", "m2", "m3"], "all": ["m1", "m2", "m3"]}}
    order = Render("lab-ctl1", ["rabbitmq"], **three).var(stops["loop"][3:-3])
    assert order == ["m3", "m2", "m1"]  # the first node stops last
    handler = yaml.safe_load((ROLE / "handlers" / "main.yml").read_text())[0]
    assert "not __rabbitmq_dist_switch" in handler["when"]


def _found(*names: str) -> dict[str, Any]:
    return {"files": [{"path": f"/etc/rabbitmq/{n}"} for n in names]}


ENV, OPT = "rabbitmq-env.conf", "inter_node_tls.config"


@pytest.mark.parametrize(
    ("tls", "before", "switch"),
    [
        (True, [(), (), ()], False),  # fresh hosts: the first start has the new configuration
        (True, [(ENV,), (ENV,), (ENV,)], True),  # a plain cluster of before
        (True, [(ENV, OPT)] * 3, False),  # already TLS
        (True, [(ENV, OPT), (ENV, OPT), (ENV,)], True),  # one node left plain (a --limit run)
        (False, [(ENV, OPT)] * 3, True),  # back to plain
        (False, [(ENV,)] * 3, False),
        (True, [None, (ENV,), (ENV, OPT)], True),  # check mode on a fresh first host
        (True, [None, None, None], False),
    ],
)
def test_the_switch_is_seen_on_every_host(
    tls: bool, before: list[tuple[str, ...] | None], switch: bool
) -> None:
    hosts = ["m1", "m2", "m3"]
    hostvars = {
        h: {"__rabbitmq_dist_found": {"skipped": True} if b is None else _found(*b)}
        for h, b in zip(hosts, before, strict=True)
    }
    r = Render(
        "lab-ctl1",
        ["rabbitmq"],
        hostvars=hostvars,
        ansible_play_hosts=hosts,
        rabbitmq_dist_tls=tls,
    )
    assert r.var("__rabbitmq_dist_switch") is switch


def test_argument_spec_names_the_switch() -> None:
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    opt = spec["argument_specs"]["main"]["options"]["rabbitmq_dist_tls"]
    assert opt["type"] == "bool" and opt["default"] is True
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["rabbitmq_dist_tls"] == "{{ rabbitmq_tls }}"
