"""Fixtures for the control node tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from controlkit import Cluster, running_cluster


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(str(tmp_path / "config.db")) as c:
        yield c
