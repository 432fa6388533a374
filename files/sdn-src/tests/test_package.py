import re

import vrstack


def test_version_matches_pyproject() -> None:
    from pathlib import Path

    text = (Path(vrstack.__file__).parent.parent / "pyproject.toml").read_text()
    assert re.search(rf'^version = "{re.escape(vrstack.__version__)}"$', text, re.M)
