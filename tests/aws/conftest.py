"""moto in server mode, reached over HTTP by the real boto3 client, behind a small proxy.

One moto server per test session, reset before each test. Every client in these tests is
pointed at it explicitly with dummy credentials, and the AWS_* environment is replaced for
each test, so nothing here can reach real AWS (tests/aws/test_real_aws.py is the one
exception, and it runs only when asked to). See motoproxy.py for what the proxy adds.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from motohelpers import FAST_RETRY, REGION, Moto
from motoproxy import AwsProxy

from canary.demo import moto_server
from strategies.aws import AwsClients


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def proxy(moto_url: str) -> Iterator[AwsProxy]:
    running = AwsProxy(moto_url).start()
    yield running
    running.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and no profile: a client that forgot its endpoint still fails."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto(moto_url: str, proxy: AwsProxy, aws_env: None) -> Moto:
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    proxy.reset()
    return Moto(proxy.url, proxy, moto_url)


@pytest.fixture
async def aws(moto: Moto) -> AsyncIterator[AwsClients]:
    clients = AwsClients(region=REGION, endpoint_url=moto.url, retry=FAST_RETRY)
    yield clients
    clients.close()
