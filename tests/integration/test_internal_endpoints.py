"""Monitoring endpoints stay inside: nginx's stub_status answers on its internal listener (8081),
which the image never exposes, while both public ports answer the JSON 404 for it and for the
metrics path (the API serves its metrics on its own port, 9100, which nginx never proxies)."""

from __future__ import annotations

import pytest

from tests.support.http import assert_error_json

INTERNAL_PATHS = ("/stub_status", "/metrics", "/metrics/", "/stub_status/", "//metrics")


@pytest.mark.parametrize("path", INTERNAL_PATHS)
def test_public_ports_answer_404_json_for_monitoring_paths(stack, path):
    assert_error_json(stack.get(path), 404)
    with stack.session() as session:
        response = session.get(stack.http_url + path, allow_redirects=False, timeout=10)
    # The plain HTTP port redirects everything else to HTTPS; these are not even redirected.
    assert_error_json(response, 404)


def internal_get(stack, path: str, method: str = "GET") -> str:
    """A request to nginx's internal listener, from inside its container (bash's /dev/tcp)."""
    script = (
        'exec 3<>/dev/tcp/127.0.0.1/8081 && printf "%s %s HTTP/1.0\\r\\n\\r\\n" "$0" "$1" >&3'
        " && cat <&3"
    )
    code, output = stack.nginx.exec(["bash", "-c", script, method, path])
    assert code == 0, output
    return output


def test_stub_status_answers_on_the_internal_listener_only(stack, docker_client, images):
    status = internal_get(stack, "/stub_status")
    assert status.startswith("HTTP/1.1 200"), status
    assert "Active connections:" in status, status
    assert "server accepts handled requests" in status, status
    # Reads only; anything refused gets the JSON 404 an unknown path gets.
    refused = internal_get(stack, "/stub_status", "POST")
    assert refused.startswith("HTTP/1.1 404"), refused
    assert '"status": 404' in refused, refused
    other = internal_get(stack, "/api/users")
    assert other.startswith("HTTP/1.1 404"), other
    assert '"status": 404' in other, other
    # `docker run -P` publishes what the image exposes: never the internal port.
    exposed = docker_client.images.get(images["nginx"]).attrs["Config"]["ExposedPorts"]
    assert set(exposed) == {"8080/tcp", "8443/tcp"}, exposed
