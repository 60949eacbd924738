"""Hardening: non-root processes, read-only root filesystems, no capabilities, no keys in images.

The containers run with the flags production uses (compose.yaml): `read_only`, `cap_drop: [ALL]`,
`no-new-privileges`, a tmpfs /tmp. These tests check the effect inside the running containers
(not only the flags), the images' own defaults, and every layer of both images.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Iterator

import pytest

from tests.support.domain import RESOURCES_PATH

PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n"
    rb"(?:[A-Za-z-]+:[^\n]*\n)*\s*"  # optional RFC 1421 headers (Proc-Type, DEK-Info)
    rb"[A-Za-z0-9+/=\r\n]{40,}"
    rb"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
)


@pytest.fixture(params=["api", "nginx"])
def service(request, stack):
    return getattr(stack, request.param)


def processes(service) -> list[tuple[int, str]]:
    top = service.container.top(ps_args="-o pid,uid,args")
    titles = top["Titles"]
    uid_col, args_col = titles.index("UID"), titles.index("COMMAND")
    return [(int(row[uid_col]), row[args_col]) for row in top["Processes"]]


def test_processes_run_as_non_root(stack):
    api = processes(stack.api)
    assert any("gunicorn" in args for _, args in api), api
    nginx = processes(stack.nginx)
    assert any("nginx: master" in args for _, args in nginx), nginx
    assert any("nginx: worker" in args for _, args in nginx), nginx
    for uid, args in api + nginx:
        assert uid != 0, f"runs as root: {args}"


def test_images_default_to_a_non_root_user(docker_client, images):
    for tag in images.values():
        user = docker_client.images.get(tag).attrs["Config"].get("User") or ""
        assert user, f"{tag} sets no user: it runs as root"
        assert user.split(":")[0] not in ("0", "root"), f"{tag} runs as {user!r}"


def test_root_filesystem_is_read_only(service):
    attrs = service.container.attrs
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    code, output = service.exec(["sh", "-c", "echo x > /itest-probe"])
    assert code != 0, (code, output)
    assert "Read-only file system" in output, (code, output)
    code, output = service.exec(["sh", "-c", "echo x > /tmp/itest-probe && rm /tmp/itest-probe"])
    assert code == 0, f"the tmpfs /tmp is not writable: {output}"


def test_no_capabilities_and_no_privilege_escalation(service):
    assert service.container.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    code, status = service.exec(["cat", "/proc/1/status"])
    assert code == 0, status
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert int(fields["Uid"].split()[1]) != 0, fields["Uid"]  # effective uid of PID 1
    assert int(fields["CapEff"].strip(), 16) == 0, fields["CapEff"]
    assert int(fields["CapPrm"].strip(), 16) == 0, fields["CapPrm"]
    assert fields["NoNewPrivs"].strip() == "1"


def test_security_headers_and_no_version_disclosure(stack):
    for response in (stack.get(RESOURCES_PATH), stack.get("/no-such-page")):
        assert response.headers.get("Server", "nginx") == "nginx", response.headers["Server"]
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
        assert "Strict-Transport-Security" in response.headers


class ChunkStream(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (docker-py's image.save())."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def private_keys_in_layer(layer: tarfile.TarFile) -> list[str]:
    found = []
    for member in layer:
        if not member.isfile():
            continue
        handle = layer.extractfile(member)
        if handle is None:
            continue
        data = handle.read()
        if b"PRIVATE KEY-----" in data and PEM_PRIVATE_KEY.search(data):
            found.append(member.name)
    return found


def test_no_private_key_in_any_image_layer(docker_client, images):
    """`docker save` each image and look inside every file of every layer for a PEM key."""
    findings = []
    for tag in images.values():
        stream = io.BufferedReader(ChunkStream(docker_client.images.get(tag).save()), 1 << 20)
        layers = 0
        with tarfile.open(fileobj=stream, mode="r|") as image:
            for member in image:
                if not member.isfile():
                    continue
                handle = image.extractfile(member)
                assert handle is not None
                if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                    try:
                        with tarfile.open(fileobj=handle, mode="r|") as layer:
                            layers += 1
                            findings += [
                                f"{tag} {member.name}: {name}"
                                for name in private_keys_in_layer(layer)
                            ]
                    except tarfile.ReadError:
                        continue  # a JSON blob (config, manifest), not a layer
        assert layers > 0, f"no layers found in `docker save {tag}`"
    assert not findings, "private keys in image layers:\n" + "\n".join(findings)
