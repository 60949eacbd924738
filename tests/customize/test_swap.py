"""The swap docs/customize.md promises, done for real on a scratch copy of the repository.

It renames the sample resource ``items`` to ``notes`` the way the guide says (the rename script,
then ``make migration``), and checks that:

- the files that changed are the resource's own (scripts/rename_resource.py's list: tables,
  routes, schemas, repositories, their unit tests, tests/support/domain.py, the seed script)
  plus one new migration, and no applied migration was edited;
- nothing else still reaches the old resource: the integration, adversarial and Swarm suites and
  the bench go through tests/support/domain.py, the HTTP machinery through routes.RESOURCES;
- the code is lint-clean, and the unit tests pass there, including the checks that the
  migrations match the tables and go down and up again on SQLite and PostgreSQL.

No Docker: it runs in `make test-unit`, in about half a minute.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from rename_resource import RESOURCE_FILES, RESOURCE_MODULES  # noqa: E402

VENV = Path(sys.prefix)  # the virtualenv running this test (make test-unit: .venv)
# Where the old resource may still be named after the swap: prose, applied migrations (history),
# the bench's stand-alone floor app with its harness, recorded bench results.
MAY_MENTION_THE_OLD_NAME = [
    "*.md",
    "services/api/src/api/migrations/versions/*",
    "bench/floor/*",
    "bench/floor.py",
    "bench/results/*",
    "scripts/rename_resource.py",  # the rename and its test name it on purpose
    "tests/customize/*",
]
MIGRATIONS = "services/api/src/api/migrations/versions"
# The swap's migration takes the number after the newest one in the repository, as `make
# migration` numbers them (api.migrate.new_revision: the head's number + 1).
HEAD = max(int(path.name[:4]) for path in (REPO / MIGRATIONS).glob("[0-9][0-9][0-9][0-9]_*.py"))
SWAP_MIGRATION = f"{HEAD + 1:04d}_replace_items_with_notes.py"
# How code reaches a resource: its path, its module, its table, its models.
OLD_RESOURCE = re.compile(r"/api/items|\bitems_repo\b|\bitem_id\b|\bItem[A-Z]\w*|\btables\.items\b")


def run(*command: str, cwd: Path, **env: str) -> str:
    """Run ``command`` in the scratch copy; its output, or a failure that shows it."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return output


def matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


@pytest.fixture(scope="module")
def swapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree (committed or not, ignored files left out) after the swap."""
    scratch = tmp_path_factory.mktemp("swap") / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, scratch / name)
    git = ("git", "-c", "user.name=swap", "-c", "user.email=swap@example.com")
    run("git", "init", "-q", cwd=scratch)
    run("git", "add", "-A", cwd=scratch)
    run(*git, "commit", "-qm", "before the swap", cwd=scratch)

    run(str(VENV / "bin/python"), "scripts/rename_resource.py", "items", "notes", cwd=scratch)
    # The scratch copy's package, not the one installed (editable) from this repository; and
    # this virtualenv, which make must not try to rebuild (-o: take it as up to date).
    source = str(scratch / "services/api/src")
    written = run(
        "make", f"VENV={VENV}", "-o", f"{VENV}/.installed", "migration",
        "m=replace items with notes", cwd=scratch, PYTHONPATH=source,
    )  # fmt: skip
    assert str(scratch) in written, written
    run("git", "add", "-A", cwd=scratch)
    return scratch


def changes(scratch: Path) -> dict[str, str]:
    """Path -> git status letter (A, M, D, R) of every change the swap made."""
    status = run("git", "status", "--porcelain", "--no-renames", cwd=scratch)
    return {line[3:]: line[0] for line in status.splitlines()}


def test_the_swap_changes_only_the_resources_own_files(swapped):
    changed = changes(swapped)
    modules = [p.format(name) for p in RESOURCE_MODULES for name in ("items", "notes")]
    outside = [path for path in changed if not matches(path, RESOURCE_FILES + modules)]
    new_migrations = [
        p for p in outside if changed[p] == "A" and fnmatch.fnmatch(p, f"{MIGRATIONS}/*")
    ]
    assert [p.rsplit("/", 1)[1] for p in new_migrations] == [SWAP_MIGRATION]
    assert sorted(set(outside) - set(new_migrations)) == []
    # A real change, not an empty one: the resource's modules moved and the domain layer changed.
    assert changed["services/api/src/api/routes/notes.py"] == "A"
    assert changed["tests/support/domain.py"] == "M"


def test_nothing_else_reaches_the_old_resource(swapped):
    listed = run("git", "ls-files", cwd=swapped).splitlines()
    leftovers = []
    for path in listed:
        if matches(path, MAY_MENTION_THE_OLD_NAME):
            continue
        try:
            text = (swapped / path).read_text()
        except UnicodeDecodeError:
            continue
        leftovers += [
            f"{path}:{n}: {line.strip()}"
            for n, line in enumerate(text.splitlines(), 1)
            if OLD_RESOURCE.search(line)
        ]
    assert not leftovers, "still reaching the old resource:\n" + "\n".join(leftovers)


def test_the_new_migration_replaces_the_table(swapped):
    upgrade = (swapped / MIGRATIONS / SWAP_MIGRATION).read_text().split("def downgrade")[0]
    assert 'op.create_table(\n        "notes"' in upgrade
    assert 'op.drop_table("items")' in upgrade


def test_the_swapped_code_is_lint_clean(swapped):
    run(str(VENV / "bin/ruff"), "check", ".", cwd=swapped)
    run(str(VENV / "bin/ruff"), "format", "--check", ".", cwd=swapped)


def test_the_unit_tests_pass_after_the_swap(swapped):
    """All of them: the notes routes, the OpenAPI snapshot, migrations == tables on both DBs."""
    source = str(swapped / "services/api/src")
    where = run(str(VENV / "bin/python"), "-c", "import api; print(api.__file__)",
                cwd=swapped, PYTHONPATH=source)  # fmt: skip
    assert where.strip().startswith(source), where
    output = run(
        str(VENV / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        cwd=swapped / "services/api", PYTHONPATH=source,
    )  # fmt: skip
    assert re.search(r"\d+ passed", output), output
    assert "test_notes.py" in run(
        str(VENV / "bin/python"), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
        cwd=swapped / "services/api", PYTHONPATH=source,
    )  # fmt: skip
