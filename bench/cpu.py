"""CPU accounting: the containers' cgroup counters and the host processes that carry the load.

Each measurement samples before and after; the deltas, divided by the requests completed, are the
"CPU s/1k req" columns of the report.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
from pathlib import Path

from common import log
from stack import docker_inspect

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cgroup_cpu_path(full_id: str) -> Path | None:
    """The file holding a container's total CPU time (cgroup v1 or v2)."""
    candidates = [
        Path(f"/sys/fs/cgroup/cpuacct/docker/{full_id}/cpuacct.usage"),  # v1, cgroupfs
        Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{full_id}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpuacct/system.slice/docker-{full_id}.scope/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{full_id}.scope/cpu.stat"),  # v2, systemd
        Path(f"/sys/fs/cgroup/docker/{full_id}/cpu.stat"),  # v2, cgroupfs
    ]
    return next((p for p in candidates if p.exists()), None)


def read_cgroup_cpu(path: Path) -> float:
    """Seconds of CPU used by the cgroup so far."""
    text = path.read_text()
    if path.name == "cpuacct.usage":
        return int(text) / 1e9
    usage = re.search(r"^usage_usec (\d+)$", text, re.MULTILINE)
    return int(usage.group(1)) / 1e6 if usage else 0.0


def proc_cpu(pid: int) -> float:
    """utime + stime of one process, seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def find_pids(comm: str, cmdline_has: str = "") -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != comm:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline_has in cmdline:
            pids.append(int(entry.name))
    return pids


def host_busy_cpu() -> float:
    """Seconds all CPUs of the host spent not idle (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """Before/after CPU seconds of the stack's containers (api, nginx, and db on PostgreSQL: the
    queries' server side, which SQLite runs inside the api's processes) and of the host processes
    that carry the benchmark's traffic: docker-proxy (Docker's userland proxy for ports published
    on 127.0.0.1), dockerd (reads the containers' log lines), the containerd shims.
    """

    def __init__(self, containers: dict[str, str], ports: dict[str, int]) -> None:
        self.cgroups: dict[str, Path] = {}
        self.shims: list[int] = []
        for name, cid in containers.items():
            full = docker_inspect(cid, "{{.Id}}")
            path = cgroup_cpu_path(full)
            if path is None:
                log(f"no cgroup CPU counter found for {name} ({full[:12]}); CPU column empty")
            else:
                self.cgroups[name] = path
            pid = int(docker_inspect(cid, "{{.State.Pid}}"))
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                self.shims.append(int(stat[1]))  # parent of the container's PID 1
        self.proxies = [
            pid
            for port in ports.values()
            for pid in find_pids("docker-proxy", f"-host-port {port} ")
        ]
        self.dockerd = find_pids("dockerd")

    def sample(self) -> dict[str, float]:
        values = {name: read_cgroup_cpu(path) for name, path in self.cgroups.items()}
        values["docker-proxy"] = sum(proc_cpu(p) for p in self.proxies)
        values["dockerd"] = sum(proc_cpu(p) for p in self.dockerd)
        values["shims"] = sum(proc_cpu(p) for p in self.shims)
        values["host_busy"] = host_busy_cpu()
        return values

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before[k], 3) for k in before if k in after}


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children: the load generators (wrk, ...)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
