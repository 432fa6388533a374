"""The modules' `ca_path` against the real config API and collector over HTTPS: with the
CA that signed their certificates they work; without it (the system CAs) or with another
CA the request fails with the API's address and the certificate error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils import analytics_api, sdn_api

SDN_SRC = Path(__file__).resolve().parents[4] / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
sys.path.insert(0, str(SDN_SRC / "tests" / "control"))
from pkikit import CA  # noqa: E402
from vrstack_apis import running  # noqa: E402

from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon  # noqa: E402


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = CA(directory, "deploy-ca")
        self.other = CA(directory, "other-ca")
        issued = self.ca.issue("api-node", ips=("127.0.0.1",), server=True)
        self.http = {"tls": {"cert": str(issued.cert), "key": str(issued.key)}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("api")
    store = {"backend": "sqlite", "path": str(work / "config.db")}
    with running("vrstack.config.main", work, store=store, http=pki.http) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("collector")
    store = {"path": str(work / "analytics.db")}
    with running("vrstack.analytics.main", work, store=store, http=pki.http) as daemon:
        yield daemon


def test_sdn_resource_with_the_ca(api: Daemon, pki: Pki) -> None:
    assert api.url.startswith("https://")
    send = sdn_api.open_url_sender(api.url, ADMIN_TOKEN, 5, ca_path=str(pki.ca.path))
    made = sdn_api.Api(send).ensure(sdn_api.Request(rtype="project", name="tls-demo"))
    assert made.changed and made.object["name"] == "tls-demo"
    again = sdn_api.Api(send).ensure(sdn_api.Request(rtype="project", name="tls-demo"))
    assert not again.changed


@pytest.mark.parametrize("which", ["system", "other"])
def test_sdn_resource_without_the_ca_fails(api: Daemon, pki: Pki, which: str) -> None:
    ca = None if which == "system" else str(pki.other.path)
    send = sdn_api.open_url_sender(api.url, ADMIN_TOKEN, 5, ca_path=ca)
    with pytest.raises(sdn_api.ApiError) as info:
        sdn_api.Api(send).ensure(sdn_api.Request(rtype="project", name="never"))
    assert f"cannot reach the config API at {api.url}" in str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_analytics_query_with_and_without_the_ca(collector: Daemon, pki: Pki) -> None:
    body = {"table": "logs", "select": ["count()"], "since": "-1h"}
    post = analytics_api.open_url_poster(collector.url, READER_TOKEN, 5, ca_path=str(pki.ca.path))
    status, answer = post("/query", body)
    assert status == 200 and "items" in answer
    post = analytics_api.open_url_poster(collector.url, READER_TOKEN, 5)
    with pytest.raises(analytics_api.QueryError, match="CERTIFICATE_VERIFY_FAILED"):
        post("/query", body)
