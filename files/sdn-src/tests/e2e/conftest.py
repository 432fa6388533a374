"""The e2e stack, built once for the module and always torn down."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from sdnstack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, TAPs and a bridge")
    if shutil.which("busybox") is None:
        pytest.fail("busybox is not installed (its udhcpc is the VMs' DHCP client)")
    s = Stack(tmp_path_factory.mktemp("e2e"))
    try:
        s.up()
        yield s
    except BaseException:
        print(s.logs())  # shown by pytest with the failure
        raise
    finally:
        s.down()
