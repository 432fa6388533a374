"""The collector tests import their helpers from collectorkit.py next to this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
