"""Scenario 5: several migration runs at once on an empty database: exactly one applies the
revisions, the others find the database up to date.

On the stack's overlay network (attachable, as the operator's one-off jobs use it): a fresh
PostgreSQL service of its own on the database node, then one replicated job of JOB_RUNS tasks,
all started together (--max-concurrent), each running `python -m api.migrate` as the stack's
migrate job does. api/migrate.py takes an advisory lock in the transaction that migrates, so the
runs queue; Alembic logs each revision it applies ("Running upgrade"), in one task's log only.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.containers import API_IMAGE, POSTGRES_IMAGE
from tests.support.swarm import STACK, Swarm
from tests.support.waiting import wait_until

JOB_RUNS = 4
DB = f"{STACK}-migtest-db"
JOB = f"{STACK}-migtest"
NETWORK = f"{STACK}_backend"


@pytest.mark.timeout(240)
def test_concurrent_migrations_apply_once(swarm: Swarm, figures: dict[str, Any]) -> None:
    manager = swarm.manager
    secret = manager.docker(
        "secret", "ls", "--format", "{{.Name}}", "--filter", f"name={STACK}_db_password"
    ).stdout.split()[0]
    try:
        manager.docker(
            "service", "create", "--detach", "--name", DB, "--network", NETWORK,
            "--endpoint-mode", "dnsrr",
            "--constraint", "node.labels.flask-stack.db == true",
            "--secret", f"source={secret},target=db_password,uid=10002,gid=10002,mode=0400",
            "--env", "POSTGRES_PASSWORD_FILE=/run/secrets/db_password",
            "--read-only", "--cap-drop", "ALL",
            "--mount", "type=tmpfs,target=/tmp,tmpfs-mode=1777",
            "--mount", "type=volume,target=/var/lib/postgresql/data",
            POSTGRES_IMAGE,
        )  # fmt: skip
        swarm.wait_running(DB, 1, timeout=90)
        manager.docker(
            "service", "create", "--detach", "--name", JOB, "--network", NETWORK,
            "--mode", "replicated-job", "--replicas", str(JOB_RUNS),
            "--max-concurrent", str(JOB_RUNS),
            "--restart-condition", "none", "--no-healthcheck",
            "--secret", f"source={secret},target=db_password,uid=10001,gid=10001,mode=0400",
            "--env", f"DATABASE_URL=postgresql+psycopg://api@{DB}:5432/api",
            "--env", "DATABASE_PASSWORD_FILE=/run/secrets/db_password",
            "--env", "DATABASE_WAIT_SECONDS=60",
            "--read-only", "--cap-drop", "ALL",
            "--mount", "type=tmpfs,target=/tmp,tmpfs-mode=1777",
            API_IMAGE, "python", "-m", "api.migrate",
        )  # fmt: skip

        def finished() -> list[str]:
            tasks = swarm.tasks(JOB, all_states=True)
            states = [task.state.split()[0] for task in tasks]
            assert "Failed" not in states, [(t.name, t.state, t.error) for t in tasks]
            return len(tasks) == JOB_RUNS and all(s == "Complete" for s in states) and states

        wait_until(finished, 120, interval=1, what=f"{JOB_RUNS} migration runs to complete")
        logs = swarm.logs(JOB, lines=1000)
        by_task: dict[str, list[str]] = {}
        for line in logs.splitlines():
            prefix, sep, message = line.partition(" | ")
            if sep:
                task = prefix.split()[-1].split("@")[0]
                by_task.setdefault(task, []).append(message)
        applied = {t for t, lines in by_task.items() if any("Running upgrade" in m for m in lines)}
        done = {t for t, ls in by_task.items() if any("at the latest revision" in m for m in ls)}
        revisions = sum("Running upgrade" in m for ls in by_task.values() for m in ls)
        figures["5. migrations"] = {
            "runs": JOB_RUNS,
            "runs_that_applied_revisions": len(applied),
            "revisions_applied": revisions,
            "runs_that_ended_at_head": len(done),
        }
        assert len(by_task) == JOB_RUNS, f"logs of {sorted(by_task)}:\n{logs}"
        assert len(applied) == 1, f"runs that applied revisions: {sorted(applied)}\n{logs}"
        assert len(done) == JOB_RUNS, logs
        assert revisions >= 1
    finally:
        manager.docker("service", "rm", JOB, DB, check=False)
