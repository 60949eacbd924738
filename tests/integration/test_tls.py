"""TLS termination at nginx: protocol versions, ALPN, HSTS and the plain-HTTP redirect.

Refusals are only meaningful if the client really offered the old protocol, so the TLS 1.0/1.1
test first completes a handshake with the same client context against an in-process server that
accepts it (OpenSSL's default security level would otherwise refuse on the client side).
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator

import pytest
import trustme

from tests.support.domain import RESOURCES_PATH
from tests.support.http import http_get

LEGACY = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1]


def client_context(
    cafile: str, version: ssl.TLSVersion, alpn: list[str] | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    with warnings.catch_warnings():
        # The TLSv1/TLSv1_1 members are deprecated; using them is the point of the test.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        # Let this client offer the legacy protocol at all (OpenSSL 3 disables it by default).
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def handshake(port: int, ctx: ssl.SSLContext) -> tuple[str | None, str | None]:
    """Complete a TLS handshake with 127.0.0.1:port; return (protocol version, ALPN protocol)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version(), tls.selected_alpn_protocol()


@pytest.fixture(scope="module")
def legacy_server() -> Iterator[tuple[int, str]]:
    """A local TLS server that accepts TLS 1.0 and 1.1: the control for the refusal test."""
    ca = trustme.CA()
    cafile = ca.cert_pem.tempfile()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ca.issue_cert("localhost").configure_cert(ctx)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # so the loop notices `stop`
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with cafile as path:
        yield listener.getsockname()[1], path
    stop.set()
    listener.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("version", LEGACY, ids=["TLSv1.0", "TLSv1.1"])
def test_legacy_tls_is_refused(stack, legacy_server, version):
    control_port, control_ca = legacy_server
    assert handshake(control_port, client_context(control_ca, version))[0] is not None, (
        "control: this client cannot speak the legacy protocol, so the test would prove nothing"
    )
    with pytest.raises(ssl.SSLError):
        handshake(stack.https_port, client_context(str(stack.ca), version))


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
    ids=["TLSv1.2", "TLSv1.3"],
)
def test_modern_tls_is_accepted_and_verifies(stack, version, name):
    negotiated, _ = handshake(stack.https_port, client_context(str(stack.ca), version))
    assert negotiated == name


def test_http2_is_negotiated_by_alpn(stack):
    ctx = client_context(str(stack.ca), ssl.TLSVersion.TLSv1_3, alpn=["h2", "http/1.1"])
    assert handshake(stack.https_port, ctx)[1] == "h2"
    ctx = client_context(str(stack.ca), ssl.TLSVersion.TLSv1_2, alpn=["h2", "http/1.1"])
    assert handshake(stack.https_port, ctx)[1] == "h2"
    ctx = client_context(str(stack.ca), ssl.TLSVersion.TLSv1_3, alpn=["http/1.1"])
    assert handshake(stack.https_port, ctx)[1] == "http/1.1"


def test_hsts_header_is_sent(stack):
    response = stack.get(RESOURCES_PATH)
    assert response.status_code == 200
    hsts = response.headers.get("Strict-Transport-Security", "")
    match = re.search(r"max-age=(\d+)", hsts)
    assert match, f"no HSTS max-age in {hsts!r}"
    assert int(match.group(1)) >= 180 * 24 * 3600, hsts


def test_plain_http_redirects_to_https(stack):
    url = f"{stack.http_url}{RESOURCES_PATH}?limit=1"
    response = http_get(url, allow_redirects=False)
    assert response.status_code == 308, response.status_code
    assert response.headers["Location"] == f"{stack.base_url}{RESOURCES_PATH}?limit=1"
    # Even the redirect speaks the API's JSON shape, never nginx's HTML page.
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["status"] == 308

    followed = http_get(url, ca=str(stack.ca))
    assert followed.status_code == 200
    assert followed.url == f"{stack.base_url}{RESOURCES_PATH}?limit=1"
    assert "items" in followed.json()


def test_plain_http_health_path_is_not_redirected(stack):
    # The one exception on the plain port: nginx's own liveness probe (the image's HEALTHCHECK).
    response = http_get(f"{stack.http_url}/nginx-health", allow_redirects=False)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
