"""One BGP speaker with one iBGP peer, for tests that run it inside a network namespace.

    ip netns exec NS python md5peer.py --address A --peer B [--seconds N]

The TCP MD5 password comes from the environment (MD5PEER_PASSWORD, "" for none), not
the command line, which any local user can read. Every 0.2 s it prints its peer's
state as one JSON line; it stops after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # files/sdn-src

from vrstack.control import bgp_codec as bc
from vrstack.control.bgp import BgpSpeaker, Peer, PeerConfig

ASN = 64512


class Sink:
    def bgp_update(self, peer: Peer, update: bc.Update) -> None:
        pass

    def bgp_down(self, peer: Peer) -> None:
        pass


async def run(address: str, peer: str, password: str, seconds: float) -> None:
    sp = BgpSpeaker(Sink(), address, ASN, address, 179, connect_retry=1.0)
    await sp.start()
    sp.set_peers([PeerConfig("peer", peer, 179, ASN, 9, "control-node", password=password)])
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        view = sp.introspect()[0]
        line = {k: view[k] for k in ("state", "last_error", "auth", "flaps")}
        print(json.dumps(line), flush=True)
        await asyncio.sleep(0.2)
    await sp.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    password = os.environ.get("MD5PEER_PASSWORD", "")
    asyncio.run(run(args.address, args.peer, password, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
