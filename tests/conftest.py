"""Make `ansible_collections.vrstack.cloud` importable from the checkout
(scripts/bootstrap.sh links the repo into .collections)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".collections"
if not (COLLECTIONS / "ansible_collections" / "vrstack" / "cloud").exists():
    raise RuntimeError(f"{COLLECTIONS} is missing: run `make bootstrap` first")
sys.path.insert(0, str(COLLECTIONS))
