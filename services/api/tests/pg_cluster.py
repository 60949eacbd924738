"""A throwaway PostgreSQL cluster for the unit tests, from the server binaries on this machine.

Debian's and Ubuntu's live in /usr/lib/postgresql/<version>/bin. The cluster listens on a Unix
socket in a temporary directory only (no TCP port), trusts local connections and skips fsync.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def postgres_bindir() -> Path | None:
    initdb = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    return Path(initdb).resolve().parent if initdb else None


class Cluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # PostgreSQL refuses to run as root; as root, run the cluster as nobody.
        self.user = "nobody" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="api-pg-"))
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self._run(
            "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )

    def _run(self, tool: str, *args: str | Path) -> None:
        subprocess.run(
            (self.bindir / tool, *args), check=True, capture_output=True, user=self.user, timeout=60
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}"

    def start(self) -> None:
        options = f"-k {self.root} -c listen_addresses='' -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
