"""A Docker Swarm of three Docker-in-Docker nodes on this machine, for tests/swarm.

The recipe is the one measured in ../shared/docs/CONTAINERS.md ("Swarm, one node and several"):
each node is a container of the node image (tests/swarm/node) running its own dockerd, on the
run's own bridge network, with its own volume for /var/lib/docker (overlay2 on overlay2 fails).
Privileged mode is refused on this project's machines (no CAP_SYS_RESOURCE), so a node gets every
other capability and no seccomp/AppArmor confinement instead.

Topology: one manager (node1) and two workers (node2, node3). The issue's node-failure drill
kills a worker that holds an API replica and is neither the database node nor the last manager;
with one manager that also holds the database (label ``flask-stack.db=true``), both workers are
such nodes, and killing one never touches the Raft quorum (three managers would survive the loss
of one too, but then the killed node is a manager, not a worker, and each node runs a Raft
replica on a 2-core machine for nothing).

Images reach the nodes with ``docker save | docker exec -i nodeN docker load`` (no registry can be
pulled from here): the API and nginx images on every node, the PostgreSQL image on the database
node only. The stack is deployed from inside node1 exactly as a user would, with
``docker stack deploy --resolve-image never -c stack.yaml``, the variables in the environment and
the secret files copied into the node.

Every node publishes its nginx (host-mode port 8443 in the stack) on its own 127.0.0.1 port of this
machine; the suite sends traffic nowhere else. Everything the harness creates carries the suites'
run label (``flask-stack.itest-run``, so ``make clean`` finds leftovers of a killed run) and is
removed by ``Swarm.cleanup``, also after a failure.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .containers import LABELS, REPO, RUN_ID, free_port, tail
from .http import HttpsClient
from .waiting import Fatal, wait_until

STACK_FILE = REPO / "deploy" / "swarm" / "stack.yaml"
MONITORING_FILE = REPO / "deploy" / "swarm" / "monitoring.yaml"
STACK = "flask-stack"  # the stack's name: services are flask-stack_api, flask-stack_db, ...
# The services of stack.yaml, and of monitoring.yaml deployed with it (MONITORING=1).
STACK_SERVICES = ("api", "db", "migrate", "nginx", "prometheus", "alertmanager")
NODE_IMAGE = "flask-stack-swarm-node:test"
NODE_DIR = REPO / "tests" / "swarm" / "node"
DB_LABEL = "flask-stack.db"
MONITORING_LABEL = "flask-stack.monitoring"
# Where the stack file and the secret files go inside node 1.
NODE_STACK_DIR = "/stack"


def run(
    args: Sequence[str],
    *,
    input: bytes | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a host command; on `check`, a failure raises AssertionError with its output."""
    result = subprocess.run(
        list(args),
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def cgroup_version() -> str:
    """The host engine's cgroup version ("1" or "2")."""
    return run(["docker", "info", "--format", "{{.CgroupVersion}}"]).stdout.strip() or "1"


def node_run_flags() -> list[str]:
    """The `docker run` flags a node needs (CONTAINERS.md; privileged mode is refused here).

    cgroup v1 (measured here): the host's cgroup namespace and /sys/fs/cgroup. cgroup v2 (GitHub
    runners, Docker Desktop): a private cgroup namespace, in which the node's entrypoint nests
    its processes as moby's dind script does. The v2 branch is NOT verified: this machine has
    cgroup v1 only.
    """
    flags = [
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "systempaths=unconfined",
    ]
    if cgroup_version() == "2":
        return [*flags, "--cgroupns", "private"]
    return [*flags, "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup"]


@dataclass
class Task:
    """One task of a service, as `docker service ps` and `docker inspect <task>` say."""

    id: str
    name: str
    node: str  # the node's hostname: node1, node2, node3
    image: str
    desired: str
    state: str  # e.g. "Running 3 seconds ago"
    error: str
    container: str  # the task container's id inside its node ("" when it has none yet)


@dataclass
class Node:
    name: str  # the node container's name on this machine
    hostname: str  # node1, node2, node3: the name the swarm knows it by
    volume: str
    https_port: int  # 127.0.0.1 port of this machine published to the node's 8443
    address: str = ""  # the node's address on the run's bridge

    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` run inside this node (its own engine)."""
        interactive = ["-i"] if input is not None else []
        return run(
            ["docker", "exec", *interactive, self.name, "docker", *args],
            input=input,
            timeout=timeout,
            check=check,
        )

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"


@dataclass
class Endpoint(HttpsClient):
    """One node's nginx as a client sees it (what domain.py's helpers need: get/post)."""

    base_url: str
    ca: Path


@dataclass
class Swarm:
    nodes: list[Node] = field(default_factory=list)
    network: str = f"swarm-{RUN_ID}"
    # Variables of the last deploy (what a user would export), for re-deploys.
    env: dict[str, str] = field(default_factory=dict)
    # The stack files every deploy passes (`-c` each): stack.yaml, then monitoring.yaml once added.
    stack_files: list[Path] = field(default_factory=lambda: [STACK_FILE])
    killed: set[str] = field(default_factory=set)

    # --- the nodes ----------------------------------------------------------------------------

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def db_node(self) -> Node:
        """The node labelled for the database: the manager (see the module docstring)."""
        return self.nodes[0]

    def node(self, hostname: str) -> Node:
        return next(node for node in self.nodes if node.hostname == hostname)

    def start(self, count: int = 3) -> None:
        """Start `count` node containers and make them a swarm (node1 the manager)."""
        labels = [arg for key, value in LABELS.items() for arg in ("--label", f"{key}={value}")]
        run(["docker", "network", "create", *labels, self.network])
        flags = node_run_flags()
        for index in range(1, count + 1):
            node = Node(
                name=f"swarm-{RUN_ID}-node{index}",
                hostname=f"node{index}",
                volume=f"swarm-{RUN_ID}-node{index}-docker",
                https_port=free_port(),
            )
            self.nodes.append(node)
            run(["docker", "volume", "create", *labels, node.volume])
            run(
                [
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    node.name,
                    "--hostname",
                    node.hostname,
                    *labels,
                    *flags,
                    "-v",
                    f"{node.volume}:/var/lib/docker",
                    "--network",
                    self.network,
                    "-p",
                    f"127.0.0.1:{node.https_port}:8443",
                    NODE_IMAGE,
                ]
            )
        for node in self.nodes:
            wait_until(
                lambda node=node: self._engine_up(node),
                60,
                interval=0.5,
                what=f"the Docker engine in {node.name}",
            )
            node.address = run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}',
                    node.name,
                ]
            ).stdout.strip()
        manager = self.manager
        manager.docker("swarm", "init", "--advertise-addr", manager.address)
        token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for node in self.nodes[1:]:
            node.docker(
                "swarm", "join", "--advertise-addr", node.address, "--token", token,
                f"{manager.address}:2377",
            )  # fmt: skip
        wait_until(
            lambda: self._ready_nodes() >= count, 60, what=f"{count} nodes Ready in the swarm"
        )
        manager.docker("node", "update", "--label-add", f"{DB_LABEL}=true", self.db_node.hostname)

    def _engine_up(self, node: Node) -> bool:
        state = run(["docker", "inspect", "-f", "{{.State.Status}}", node.name]).stdout.strip()
        if state != "running":
            logs = run(["docker", "logs", "--tail", "40", node.name], check=False)
            raise Fatal(f"node {node.name} is {state}:\n{logs.stdout}{logs.stderr}")
        return node.docker("info", "--format", "{{.ID}}", check=False).returncode == 0

    def _ready_nodes(self) -> int:
        out = self.manager.docker("node", "ls", "--format", "{{.Status}}").stdout
        return out.split().count("Ready")

    def load_images(self, images: Iterable[str], nodes: Iterable[Node]) -> None:
        """`docker save IMAGES | docker exec -i NODE docker load`, for each of `nodes`."""
        images = list(images)
        for node in nodes:
            with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE) as save:
                load = subprocess.run(
                    ["docker", "exec", "-i", node.name, "docker", "load", "-q"],
                    stdin=save.stdout,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
            assert save.returncode == 0, f"docker save {images} failed"
            assert load.returncode == 0, f"docker load into {node.name}: {load.stderr}"

    def copy_into(self, node: Node, source: Path, name: str) -> str:
        """Copy the host file `source` into `node` as /stack/NAME; its path there."""
        node.docker("version", "--format", "{{.Server.Version}}")  # the node is up
        run(["docker", "exec", node.name, "mkdir", "-p", NODE_STACK_DIR])
        target = f"{NODE_STACK_DIR}/{name}"
        run(["docker", "cp", str(source), f"{node.name}:{target}"])
        return target

    # --- the stack ----------------------------------------------------------------------------

    def deploy(self, **env: str) -> None:
        """`docker stack deploy` from node 1 with the stack files as they are; `env` adds to and
        overrides the variables of the previous deploy."""
        self.env.update(env)
        files = [
            arg
            for path in self.stack_files
            for arg in ("-c", self.copy_into(self.manager, path, path.name))
        ]
        env_args = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        run(
            [
                "docker", "exec", *env_args, self.manager.name,
                "docker", "stack", "deploy", "--resolve-image", "never", *files, STACK,
            ],
            timeout=120,
        )  # fmt: skip

    def deploy_monitoring(self, node: Node, **env: str) -> None:
        """What `MONITORING=1 make swarm-deploy` adds: monitoring.yaml deployed with the stack,
        its services on ``node`` (labelled for them; its images must be loaded there)."""
        self.manager.docker(
            "node", "update", "--label-add", f"{MONITORING_LABEL}=true", node.hostname
        )
        if MONITORING_FILE not in self.stack_files:
            self.stack_files.append(MONITORING_FILE)
        self.deploy(**env)

    def task_addresses(self, service: str, network: str = f"{STACK}_backend") -> dict[str, str]:
        """The address on ``network`` of every running task of ``service`` -> its node."""
        addresses = {}
        for task in self.running(service):
            detail = self.node(task.node).docker("inspect", task.container).stdout
            networks = json.loads(detail)[0]["NetworkSettings"]["Networks"]
            addresses[networks[network]["IPAddress"]] = task.node
        return addresses

    def service(self, name: str) -> str:
        """The swarm's name of a service: the stack's own by their short name (api -> the
        stack's api), any other as it is."""
        return f"{STACK}_{name}" if name in STACK_SERVICES else name

    def inspect_service(self, name: str) -> dict[str, Any]:
        out = self.manager.docker("service", "inspect", self.service(name)).stdout
        return json.loads(out)[0]

    def tasks(self, service: str, *, all_states: bool = False) -> list[Task]:
        """The service's tasks (by default only those meant to run), with their containers."""
        args = ["service", "ps", "--no-trunc", "--format", "{{json .}}", self.service(service)]
        if not all_states:
            args[2:2] = ["--filter", "desired-state=running"]
        rows = [json.loads(line) for line in self.manager.docker(*args).stdout.splitlines()]
        tasks = []
        for row in rows:
            detail = json.loads(self.manager.docker("inspect", row["ID"]).stdout)[0]
            container = (detail.get("Status", {}).get("ContainerStatus") or {}).get(
                "ContainerID", ""
            )
            tasks.append(
                Task(
                    id=row["ID"],
                    name=row["Name"],
                    node=row["Node"],
                    image=row["Image"],
                    desired=row["DesiredState"],
                    state=row["CurrentState"],
                    error=row["Error"],
                    container=container or "",
                )
            )
        return tasks

    def running(self, service: str) -> list[Task]:
        return [task for task in self.tasks(service) if task.state.startswith("Running")]

    def wait_running(self, service: str, count: int, timeout: float = 120) -> list[Task]:
        """Wait until `count` tasks of `service` run (healthy: Swarm reports Running only then)."""
        return wait_until(
            lambda: (tasks := self.running(service)) and len(tasks) >= count and tasks,
            timeout,
            interval=1,
            what=f"{count} running tasks of {self.service(service)}",
        )

    def task_exec(
        self, task: Task, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ARGS inside the task's container (in the node that runs it)."""
        return self.node(task.node).docker("exec", task.container, *args, check=check)

    def endpoint(self, node: Node, ca: Path) -> Endpoint:
        return Endpoint(node.base_url, ca)

    def wait_ready(self, ca: Path, timeout: float = 180) -> None:
        """Every node's nginx answers /readyz 200 over HTTPS."""
        for node in self.nodes:
            endpoint = self.endpoint(node, ca)
            wait_until(
                lambda endpoint=endpoint: endpoint.get("/readyz", timeout=5).status_code == 200,
                timeout,
                interval=1,
                what=f"{endpoint.base_url}/readyz through {node.hostname}'s nginx",
            )

    def update_state(self, service: str) -> str:
        status = self.inspect_service(service).get("UpdateStatus") or {}
        return status.get("State", "")

    def logs(self, service: str, lines: int = 200) -> str:
        result = self.manager.docker(
            "service", "logs", "--no-trunc", "--timestamps", "--tail", str(lines),
            self.service(service), check=False, timeout=60,
        )  # fmt: skip
        return result.stdout + result.stderr

    # --- nodes going away -----------------------------------------------------------------------

    def kill(self, node: Node) -> float:
        """SIGKILL the node's container (its engine and every task on it); the time it happened."""
        run(["docker", "kill", node.name])
        at = time.monotonic()
        self.killed.add(node.name)
        return at

    # --- failure reports and clean-up -------------------------------------------------------------

    def diagnostics(self) -> str:
        """What the swarm says: nodes, services, every task with its error, recent logs."""
        if not self.nodes or self.manager.name in self.killed:
            return "(no swarm manager)"
        parts = []

        def say(title: str, *args: str) -> None:
            result = self.manager.docker(*args, check=False, timeout=60)
            parts.append(f"--- {title}\n{result.stdout}{result.stderr}")

        say("docker node ls", "node", "ls")
        say("docker service ls", "service", "ls")
        services = self.manager.docker(
            "service", "ls", "--format", "{{.Name}}", check=False
        ).stdout.split()
        for service in services:
            say(
                f"docker service ps --no-trunc {service}",
                "service", "ps", "--no-trunc", "--format",
                "{{.Name}} {{.Image}} {{.Node}} desired={{.DesiredState}} {{.CurrentState}} "
                "err={{.Error}}",
                service,
            )  # fmt: skip
            say(
                f"update status of {service}",
                "service", "inspect", "--format", "{{json .UpdateStatus}}", service,
            )  # fmt: skip
        for service in services:
            logs = tail(self.logs(service), 40)
            parts.append(f"--- docker service logs {service} (tail)\n{logs}")
        return "\n".join(parts)

    def cleanup(self) -> None:
        """Remove the nodes (and so the swarm), their volumes and the network."""
        errors = []
        for node in self.nodes:
            result = run(["docker", "rm", "-f", "-v", node.name], check=False, timeout=120)
            if result.returncode != 0 and "No such container" not in result.stderr:
                errors.append(result.stderr)
        for node in self.nodes:
            result = run(["docker", "volume", "rm", "-f", node.volume], check=False, timeout=120)
            if result.returncode != 0:
                errors.append(result.stderr)
        with contextlib.suppress(subprocess.TimeoutExpired):
            result = run(["docker", "network", "rm", self.network], check=False, timeout=60)
            if result.returncode != 0 and "not found" not in result.stderr:
                errors.append(result.stderr)
        if errors:
            raise RuntimeError("swarm cleanup failed: " + "; ".join(errors))
