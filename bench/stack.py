"""The benchmark's compose stack: environment, lifecycle, inspection, logs and seed data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import BENCH_DIR, CERTS, IMAGE_TAG, PROJECT, ROOT, BenchError, domain, log

# --- compose --------------------------------------------------------------------------------


def compose_files(database: str) -> list[Path]:
    """compose.yaml, PostgreSQL's db service when it is the database, then the bench override
    (last, so its changes to the api service win over both)."""
    files = [ROOT / "compose.yaml"]
    if database == "postgres":
        files.append(ROOT / "compose.postgres.yaml")
    return [*files, BENCH_DIR / "compose.bench.yaml"]


def compose_env(overrides: dict[str, str], ports: dict[str, int], database: str) -> dict[str, str]:
    """The environment for every `docker compose` call: bench ports and tag, the compose files
    of ``database``, then --set values."""
    env = dict(os.environ)
    # Same defaults as the Makefile: Debian's old buildx (if any) cannot do Bake, and nginx must
    # be able to read certs/server.key (handed to uid 10001 by certs.py when run as root).
    env.setdefault("COMPOSE_BAKE", "false")
    if "NGINX_USER" not in env:
        env["NGINX_USER"] = "10001:10001" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    env.update(
        {
            "HTTPS_PORT": str(ports["https"]),
            "HTTP_PORT": str(ports["http"]),
            "BENCH_API_PORT": str(ports["api"]),
            "BIND_ADDRESS": "127.0.0.1",
            "IMAGE_TAG": IMAGE_TAG,
            # Compose's own variable, and the only place the files are chosen: every call made
            # with this environment (build, up, logs, the floor's, down) names the same ones,
            # so a PostgreSQL stack is never handled without its db service.
            "COMPOSE_FILE": os.pathsep.join(str(f) for f in compose_files(database)),
        }
    )
    env.update(overrides)
    return env


def compose(
    env: dict[str, str],
    *args: str,
    check: bool = True,
    capture: bool = False,
    extra_files: Sequence[Path] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `docker compose` on the bench project; raise BenchError on failure when ``check``.

    The files are those of ``env`` (COMPOSE_FILE, see compose_env); ``extra_files`` are layered
    after them (e.g. the floor override). Any -f replaces COMPOSE_FILE, hence all of them here.
    """
    cmd = ["docker", "compose", "-p", PROJECT]
    for f in [*env["COMPOSE_FILE"].split(os.pathsep), *extra_files]:
        cmd += ["-f", str(f)]
    cmd += list(args)
    pipe = subprocess.PIPE if capture else None
    # Own process group: `docker` runs Compose as a child plugin process, and killing only the
    # CLI (what subprocess.run does when the harness is interrupted) can leave an orphaned
    # `compose up` creating containers after the teardown's `down` has run.
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, text=True, stdout=pipe, stderr=pipe, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        raise
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip()[-2000:] if capture else ""
        raise BenchError(f"`docker compose {' '.join(args)}` failed ({result.returncode}) {detail}")
    return result


def down(env: dict[str, str], grace_s: int) -> None:
    """Remove the stack and its volumes; never fails (also used for leftovers and teardown).

    Also after the floor phase: containers are found by the project's label, and
    compose.floor.yaml adds no service, network or volume that these files would not name.
    """
    compose(env, "down", "-v", "--remove-orphans", "-t", str(grace_s), capture=True, check=False)
    # `down -v` removes only the volumes its files declare: the PostgreSQL data volume of a killed
    # `--db postgres` run would outlive a SQLite run's clean-up (--remove-orphans takes its
    # container, not its volume). The project's label finds every one of them.
    listed = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True,
        text=True,
    )
    if volumes := listed.stdout.split():
        subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True)


def start(env: dict[str, str]) -> dict[str, float]:
    """Build the images and bring the stack up; return the build and `up`-to-healthy times."""
    timings: dict[str, float] = {}
    log("building images (tag :bench)")
    started = time.monotonic()
    compose(env, "build", capture=True)
    timings["build_s"] = round(time.monotonic() - started, 2)
    log("starting the stack and waiting until healthy")
    started = time.monotonic()
    up = compose(env, "up", "-d", "--wait", capture=True, check=False)
    timings["up_to_healthy_s"] = round(time.monotonic() - started, 2)
    if up.returncode != 0:
        logs = compose(env, "logs", "--no-color", "--tail", "30", capture=True, check=False)
        raise BenchError(f"the stack did not become healthy:\n{up.stderr}\n{logs.stdout}")
    return timings


def recreate_api(env: dict[str, str], what: str, extra_files: Sequence[Path] = ()) -> float:
    """Recreate only the api service; return `up`-to-healthy seconds.

    ``env`` and ``extra_files`` carry the change, if any (a variable compose passes to the api,
    an override file): a new container is started either way. ``what`` names it in the error.
    Teardown is unchanged: nothing here adds a service, network or volume, and `down -v` finds the
    new container by the project's label. The database (SQLite's volume, or the db service) is
    kept, seeded rows included.
    """
    started = time.monotonic()
    # --no-deps: touch nothing but api (nginx keeps running and must find the new container).
    up = compose(
        env,
        "up",
        "-d",
        "--wait",
        "--no-deps",
        "--force-recreate",
        "api",
        capture=True,
        check=False,
        extra_files=extra_files,
    )
    if up.returncode != 0:
        logs = compose(env, "logs", "--no-color", "--tail", "30", "api", capture=True, check=False)
        raise BenchError(f"{what} did not become healthy:\n{up.stderr}\n{logs.stdout}")
    return round(time.monotonic() - started, 2)


def container_id(env: dict[str, str], service: str) -> str:
    out = compose(env, "ps", "-q", service, capture=True).stdout.strip()
    if not out:
        raise BenchError(f"no container for service {service}")
    return out.splitlines()[0]


def stack_containers(env: dict[str, str]) -> dict[str, str]:
    """Container id of every running service: api and nginx, and db on PostgreSQL."""
    services = compose(env, "ps", "--services", capture=True).stdout.split()
    return {s: container_id(env, s) for s in sorted(services)}


def docker_inspect(ref: str, fmt: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", fmt, ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def count_in_logs(env: dict[str, str], service: str, since: str, needle: str) -> int:
    out = compose(env, "logs", "--no-color", "--since", since, service, capture=True, check=False)
    return (out.stdout + out.stderr).count(needle)


def health_timeline(cid: str) -> dict[str, Any]:
    """When the container started and when its first passing health probe ended."""
    state = json.loads(docker_inspect(cid, "{{json .State}}"))
    probes = (state.get("Health") or {}).get("Log") or []
    healthy = next((p["End"] for p in probes if p.get("ExitCode") == 0), None)
    return {"started": state.get("StartedAt"), "first_healthy_probe": healthy}


# --- seed data ------------------------------------------------------------------------------


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERTS / "ca.pem"))


def http_json(
    method: str, url: str, body: dict | None = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = tls_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def seed(base: str, run_id: str, count: int = 25) -> dict[str, Any]:
    """One user and ``count`` public resources, so a page of 20 of them (measurement 5) is full.

    Paths and bodies are the sample domain's (tests/support/domain.py).
    """
    users, resources = domain.USERS_PATH, domain.RESOURCES_PATH
    body = domain.user_body("Bench Seed", f"seed-{run_id}@example.com")
    status, user = http_json("POST", base + users, body)
    if status != 201:
        raise BenchError(f"seeding: POST {users} answered {status}: {user}")
    token = user["api_key"]
    ids = []
    for i in range(count):
        body = domain.resource_body(f"bench item {i}", public=True)
        status, created = http_json("POST", base + resources, body, token=token)
        if status != 201:
            raise BenchError(f"seeding: POST {resources} answered {status}: {created}")
        ids.append(created["id"])
    page_url = f"{resources}?limit=20"
    status, page = http_json("GET", base + page_url)
    if status != 200 or len(page.get("items", [])) != 20:
        raise BenchError(f"seeding: GET {page_url} gave {status}, not a page of 20")
    return {"user_id": user["id"], "resource_id": ids[0], "resources": len(ids)}
