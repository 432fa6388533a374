"""`vrstack-status`: every vrstack service on this node and the datapath, for a person
(or `--json` for the vrstack.cloud.sdn_status module).

Exit 0 when every service is active (or backup), 1 when one is not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

from .node import collect, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-status", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (what sdn_status reads)")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for each service's /health"
    )
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 60:
        parser.error("--timeout: between 0 and 60 seconds")
    node = collect(timeout=args.timeout)
    if args.json:
        print(json.dumps(node.as_dict(), sort_keys=True))
    else:
        print(render(node))
    return 0 if node.ok else 1


if __name__ == "__main__":
    sys.exit(main())
