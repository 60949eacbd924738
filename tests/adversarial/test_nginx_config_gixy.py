"""gixy (the maintained gixy-next fork) on the nginx configuration exactly as the image renders it.

The built image's entrypoint renders the templates with the DEFAULT settings (rate limits on,
the production shape) into /tmp/nginx inside a hardened throwaway container; the rendered tree is
copied out (tar | base64 on stdout), its absolute include paths are pointed at the copy, and gixy
analyses it with every plugin at every severity.

Target: zero findings, or each remaining one explained in a comment at the line it reports: the
reported line must carry `# gixy <plugin>`, and so must every other line with the same directive
(gixy groups identical findings and reports the first line only).

Control: gixy must find a known mistake (an `alias` path traversal) planted in a copy of the same
tree, so a gixy that silently parsed nothing -- say, includes not followed -- fails the test.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.containers import NGINX_IMAGE, Tls
from tests.support.waiting import wait_until

RENDERED_IN_IMAGE = "/tmp/nginx/"


def render(docker_client, tls: Tls, target: Path) -> Path:
    """Render the configuration in the image; unpack it into `target`; return nginx.conf."""
    # The tree is read with `exec` from a container kept alive for it, not as the stdout of a
    # container that rendered it and exited: docker-py reads that stdout back from the container's
    # log, which engine 20.10 was seen to cut at a 16 KiB boundary (a tar cut at a member boundary
    # even reads as complete, with files missing).
    container = docker_client.containers.run(
        NGINX_IMAGE,
        ["sleep", "120"],
        user=tls.nginx_user,
        read_only=True,
        tmpfs={"/tmp": ""},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        network_mode="none",
        volumes={str(tls.directory): {"bind": "/etc/nginx/certs", "mode": "ro"}},
        detach=True,
    )
    try:
        wait_until(
            lambda: container.exec_run(["test", "-f", "/tmp/nginx/nginx.conf"]).exit_code == 0,
            30,
            what="the entrypoint to render the configuration",
        )
        code, output = container.exec_run(
            ["sh", "-c", "tar -C /tmp/nginx -c --exclude=./tmp . | base64 -w0"], stderr=False
        )
        assert code == 0, output[-500:]
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(output))) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(target, filter="data")
        else:  # Python before 3.11.4 (Debian 12's 3.11.2) has no filters; the archive is ours
            archive.extractall(target)
    for path in target.rglob("*.conf"):
        path.write_text(path.read_text().replace(RENDERED_IN_IMAGE, f"{target}/"))
    conf = target / "nginx.conf"
    assert conf.is_file(), sorted(str(p) for p in target.rglob("*"))
    return conf


def gixy(conf: Path) -> list[dict]:
    completed = subprocess.run(
        [sys.executable, "-m", "gixy", "--format", "json", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Exit status 1 just means "findings"; anything else is gixy failing.
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    return json.loads(completed.stdout or "[]")


@pytest.fixture(scope="module")
def rendered(docker_client, images, tls, tmp_path_factory) -> Path:
    return render(docker_client, tls, tmp_path_factory.mktemp("nginx-rendered"))


def test_gixy_findings_are_all_explained_at_their_line(rendered, figures):
    findings = gixy(rendered)
    unexplained = []
    for finding in findings:
        lines = Path(finding["file"]).read_text().splitlines()
        reported = lines[finding["line"] - 1]
        marker = f"# gixy {finding['plugin']}"
        directive = reported.split("#", 1)[0].strip()
        same = [
            line
            for path in rendered.parent.rglob("*.conf")
            for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip() == directive
        ]
        for line in same or [reported]:
            if marker not in line:
                unexplained.append(
                    f"{finding['severity']} {finding['plugin']} at {finding['file']}:"
                    f"{finding['line']}: {line.strip()!r} -- {finding['summary']}"
                )
    figures["gixy"] = {
        "findings": len(findings),
        "explained": [
            f"{f['severity']} {f['plugin']} ({Path(f['file']).name}:{f['line']})" for f in findings
        ],
    }
    assert not unexplained, "gixy findings without a comment at the line:\n" + "\n".join(
        unexplained
    )


def test_gixy_control_finds_a_planted_mistake(rendered, tmp_path):
    control = tmp_path / "control"
    for path in rendered.parent.rglob("*"):
        if path.is_file():
            copy = control / path.relative_to(rendered.parent)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(path.read_text().replace(f"{rendered.parent}/", f"{control}/"))
    https = control / "servers" / "https.conf"
    text = https.read_text()
    planted = "    location /files {\n        alias /srv/files/;\n    }\n\n    location / {"
    assert "    location / {" in text
    https.write_text(text.replace("    location / {", planted, 1))
    plugins = {finding["plugin"] for finding in gixy(control / "nginx.conf")}
    assert "alias_traversal" in plugins, plugins
