"""The agent's vif numbers are the kernel datapath's (vrouter-vhost0: vif 0 fabric,
vif 1 vhost0, vif 2 pkt0): on a datapath programmed like that, the agent keeps vhost0,
takes pkt0 as it is and numbers ports from 3. In kernel mode it talks generic netlink
(`datapath.socket: netlink`), not a socket file of that name."""

from __future__ import annotations

import ast
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentkit import dp_dump, eventually, running_agent, settings

from vrstack.agent import program
from vrstack.agent.agent import Agent
from vrstack.agent.ports import Port
from vrstack.config.testing import free_port
from vrstack.datapath.client import DatapathClient
from vrstack.datapath.codec import Obj, Op
from vrstack.datapath.genl import NetlinkError

VHOST0_SCRIPT = Path(__file__).resolve().parents[4] / "roles/vrouter/files/vrouter-vhost0.py"


def script_constants() -> dict[str, int]:
    """FABRIC_VIF, HOST_VIF, AGENT_VIF as the vhost0 script assigns them."""
    for node in ast.parse(VHOST0_SCRIPT.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            names = [t.id for t in node.targets[0].elts if isinstance(t, ast.Name)]
            if "HOST_VIF" in names:
                return dict(zip(names, ast.literal_eval(node.value), strict=True))
    raise AssertionError(f"{VHOST0_SCRIPT}: no HOST_VIF assignment")


def test_the_agent_numbers_vifs_as_the_vhost0_script_does() -> None:
    assert script_constants() == {
        "FABRIC_VIF": program.FABRIC_VIF,
        "HOST_VIF": program.HOST_VIF,
        "AGENT_VIF": program.AGENT_VIF,
    }
    assert program.FIRST_PORT_VIF == program.AGENT_VIF + 1


@pytest.fixture
def datapath(vrouterd_binary: Path, tmp_path: Path) -> Iterator[Path]:
    """A vrouterd programmed as vrouter-vhost0 leaves the kernel one (no interfaces:
    --attach-only makes none)."""
    sock = tmp_path / "control.sock"
    with (tmp_path / "vrouterd.log").open("w") as log:
        proc = subprocess.Popen(
            [str(vrouterd_binary), "--control", str(sock), "--attach-only"], stderr=log
        )
    try:
        eventually_file(sock)
        with DatapathClient(str(sock)) as c:
            c.call(Op.ADD, Obj.VIF, VIF_IDX=0, VIF_TYPE=1, VIF_MAC="02:00:00:00:0a:01")
            c.call(Op.ADD, Obj.VIF, VIF_IDX=1, VIF_TYPE=2, VIF_NAME="vhost0",
                   VIF_MAC="02:00:00:00:0a:01")  # fmt: skip
            c.call(Op.ADD, Obj.VIF, VIF_IDX=2, VIF_TYPE=4, VIF_NAME="pkt0")
        yield sock
    finally:
        proc.terminate()
        proc.wait(5)


def eventually_file(path: Path) -> None:
    for _ in range(250):
        if path.exists():
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear")


@pytest.mark.asyncio
async def test_vhost0_is_left_alone_and_ports_start_at_vif_3(datapath: Path) -> None:
    s = settings("compute1", "198.18.2.11", [("127.0.0.1", free_port())], datapath)
    async with running_agent(s) as agent:
        agent.add_port(Port("p1", "demo:blue:blue", "blue", "02:00:c6:12:0a:03", ("198.18.10.3",)))
        await agent.wait_synced()
        vifs = await eventually(
            lambda: (v := {x["VIF_IDX"]: x for x in dp_dump(datapath, Obj.VIF)}) and 3 in v and v,
            what="the port's vif",
        )
    assert vifs[1]["VIF_TYPE"] == 2 and vifs[1]["VIF_NAME"] == "vhost0"
    assert vifs[2]["VIF_TYPE"] == 4 and vifs[2]["VIF_NAME"] == "pkt0"
    assert vifs[3]["VIF_TYPE"] == 3 and vifs[3]["VIF_MAC"] == "02:00:c6:12:0a:03"
    assert sorted(vifs) == [0, 1, 2, 3]


def test_kernel_mode_talks_generic_netlink() -> None:
    s = settings("compute1", "198.18.2.11", [("127.0.0.1", 5269)], Path("netlink"))
    with pytest.raises(NetlinkError, match="generic netlink family 'vrouter' not found"):
        Agent(s).open_datapath()
