"""A page's cost as the data grows: every list endpoint at 1,000 to 1,000,000 rows, in process.

The app as bench/inprocess.py calls it (the image's middleware and hooks, no server), on a
throwaway SQLite file and/or PostgreSQL. At each size the resource table and the users table are
grown to that many rows, and each page below is asked for with ``limit=20``:

- the resource list anonymous, as another user, as the owner (public and own private mixed), and
  filtered by owner (``owner_id``: anonymous, another user, the owner), and the users' list.

The growth is the layout that costs a list most if it walks the primary key and skips what the
caller may not see: private resources of one user (FILTERED), stored before the rows the pages
show, which are created through the API after each growth step (the owner's public and private
resources in turn, FILTERED's public ones). services/api/tests/test_list_cost.py checks other
layouts, with a cost proxy only.

Two figures per page and size:

- ms: wall-clock time per request, best of 7 batches (the database server's share included, unlike
  bench/inprocess.py's CPU time, which on PostgreSQL would leave the query out);
- work: what the database did for the request's statements, which is the same from run to run:
  SQLite's virtual-machine steps (a progress handler), PostgreSQL's shared buffers hit + read
  (``EXPLAIN (ANALYZE, BUFFERS)`` of each SELECT the request sent, run again: the plan made for
  those values, where the request itself may run a prepared statement's generic plan, which only
  the ms show; services/api/tests/test_list_cost.py counts both).

    .venv/bin/python bench/growth.py                      # SQLite, 1,000 to 1,000,000 rows
    .venv/bin/python bench/growth.py --db postgres        # a throwaway PostgreSQL cluster
    .venv/bin/python bench/growth.py --db both --sizes 1000,10000
    .venv/bin/python bench/growth.py --database-url postgresql+psycopg://api@host/db

``--db postgres`` starts a cluster of its own from the host's PostgreSQL server binaries, on a Unix
socket, as the unit tests do (services/api/tests/pg_cluster.py; as root it runs as nobody), and
removes it at the end. ``--database-url`` uses a database of yours: rows are added to it (the
growth stays), none of anyone else's is touched. The sizes are the tables' row counts, whatever
was there before. Filling 1,000,000 rows takes a few seconds (one ``INSERT ... SELECT`` copying a
row made through the API); a whole run about a minute per database. Results are printed as a
table and written to ``bench/results/<UTC timestamp>-growth-<database>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from common import DATABASES, RESULTS_DIR, ROOT, domain, log
from inprocess import make_app, wsgi_caller

SIZES = (1_000, 10_000, 100_000, 1_000_000)
PAGE = 20
BATCHES = 7
BATCH_SECONDS = 0.1  # each batch runs about this long, so a slow page is timed in fewer requests


def _table(path: str) -> Any:
    """The table behind a list path: named like the path's last segment (``/api/users``: users),
    which the rename of the resource (scripts/rename_resource.py) keeps true."""
    from api.tables import metadata

    return metadata.tables[path.rstrip("/").rsplit("/", 1)[-1]]


def _grow(conn: Any, table: Any, template_id: int, count: int, first: int) -> None:
    """Add ``count`` copies of row ``template_id`` in one INSERT ... SELECT; columns that must be
    unique get the copy's number (``first``, ``first`` + 1, ...) in front, cut to their length."""
    import sqlalchemy as sa

    unique = {c.name for c in table.columns if c.unique} | {
        c.name
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
        for c in constraint.columns
    }
    columns = [c for c in table.columns if not c.primary_key]
    values = [
        f"substr(CAST(n.i AS VARCHAR) || '-' || t.{c.name}, 1, {c.type.length})"
        if c.name in unique
        else f"t.{c.name}"
        for c in columns
    ]
    [key] = table.primary_key.columns
    insert = f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)})"
    select = f"SELECT {', '.join(values)} FROM {table.name} AS t, "
    where = f"WHERE t.{key.name} = :template"
    if conn.dialect.name == "sqlite":
        series = (
            "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last)"
        )
        statement = f"{series} {insert} {select} n {where}"
    else:
        series = "generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n(i)"
        statement = f"{insert} {select} {series} {where}"
    params = {"template": template_id, "first": first, "last": first + count - 1}
    conn.execute(sa.text(statement), params)


class Work:
    """What the database does for the statements a request sends (see the module's docstring)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.counting = False
        self.steps = 0
        self.sent: list[tuple[str, Any]] = []
        if engine.dialect.name == "sqlite":
            event.listen(engine, "checkout", self._on_checkout)
        else:
            event.listen(engine, "before_cursor_execute", self._on_execute)

    def _step(self) -> int:
        self.steps += 1
        return 0  # go on

    def _on_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.set_progress_handler(self._step if self.counting else None, 1)

    def _on_execute(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.counting and statement.lstrip().upper().startswith("SELECT"):
            self.sent.append((statement, params))

    def of(self, request: Callable[[], None]) -> int:
        self.steps, self.sent, self.counting = 0, [], True
        try:
            request()
        finally:
            self.counting = False
        if self.engine.dialect.name == "sqlite":
            return self.steps
        buffers = 0
        with self.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            for statement, params in self.sent:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)
                plan = cursor.fetchone()[0]
                top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
                buffers += top["Shared Hit Blocks"] + top["Shared Read Blocks"]
        return buffers


def ms_per_request(request: Callable[[], None]) -> float:
    request()
    started = time.perf_counter()
    request()
    n = max(3, min(2_000, math.ceil(BATCH_SECONDS / max(time.perf_counter() - started, 1e-6))))
    best = math.inf
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(n):
            request()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1000


def measure(database_url: str | None, sizes: list[int]) -> dict[str, Any]:
    """The table of one database: per size, per page, ms and work."""
    from sqlalchemy import func, select

    app = make_app(database_url)
    call = wsgi_caller(app)
    engine = app.extensions["api.db"].engine
    work = Work(engine)
    token = uuid.uuid4().hex[:8]

    def post(path: str, body: Any, **headers: str) -> dict[str, Any]:
        status, answer = call("POST", path, body, **headers)
        if not status.startswith("201"):
            raise SystemExit(f"POST {path}: unexpected {status}: {answer[:200]!r}")
        return json.loads(answer)

    def sign_up(name: str) -> tuple[int, dict[str, str]]:
        user = post(domain.USERS_PATH, domain.user_body(name, f"{name}-{token}@example.com"))
        return user["id"], {"authorization": f"Bearer {user['api_key']}"}

    owner, owner_auth = sign_up("owner")
    _, other_auth = sign_up("other")
    filtered, filtered_auth = sign_up("filtered")
    template_user, _ = sign_up("filler")
    template = post(domain.RESOURCES_PATH, domain.resource_body("filler"), **filtered_auth)["id"]
    resources, users = _table(domain.RESOURCES_PATH), _table(domain.USERS_PATH)

    def list_query(**params: Any) -> str:
        return urllib.parse.urlencode({"limit": PAGE, **params})

    pages: dict[str, tuple[str, str, dict[str, str]]] = {
        "anonymous": (domain.RESOURCES_PATH, list_query(), {}),
        "another user": (domain.RESOURCES_PATH, list_query(), other_auth),
        "the owner (own mixed page)": (domain.RESOURCES_PATH, list_query(), owner_auth),
        "owner_id, anonymous": (domain.RESOURCES_PATH, list_query(**domain.owned_by(filtered)), {}),
        "owner_id, another user": (
            domain.RESOURCES_PATH,
            list_query(**domain.owned_by(filtered)),
            other_auth,
        ),
        "owner_id, the owner": (
            domain.RESOURCES_PATH,
            list_query(**domain.owned_by(owner)),
            owner_auth,
        ),
        "users": (domain.USERS_PATH, list_query(), {}),
    }
    shown: list[tuple[int, dict[str, str]]] = []  # the rows the pages show, and their owner's key
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for resource_id, auth in shown:  # the pages' rows move behind the new filler
            status, _ = call("DELETE", domain.resource_url(resource_id), **auth)
            if not status.startswith("204"):
                raise SystemExit(f"DELETE: unexpected {status}")
        with engine.begin() as conn:
            for table, template_id in ((resources, template), (users, template_user)):
                count = conn.execute(select(func.count()).select_from(table)).scalar_one()
                if size > count:
                    _grow(conn, table, template_id, size - count, first=count + 1)
        if engine.dialect.name == "postgresql":  # what autovacuum does after a bulk load
            with engine.connect() as conn:
                conn.exec_driver_sql(f"ANALYZE {resources.name}")
                conn.exec_driver_sql(f"ANALYZE {users.name}")
        shown = []
        for i in range(PAGE + 5):
            body = domain.resource_body(f"page {i}", public=i % 2 == 0)
            shown.append((post(domain.RESOURCES_PATH, body, **owner_auth)["id"], owner_auth))
            body = domain.resource_body(f"page {i}", public=True)
            shown.append((post(domain.RESOURCES_PATH, body, **filtered_auth)["id"], filtered_auth))
        with engine.connect() as conn:
            counted = {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (resources, users)
            }
        row: dict[str, Any] = {"size": size, "rows": counted, "pages": {}}
        for label, (path, query, auth) in pages.items():

            def request(path: str = path, query: str = query, auth: dict = auth) -> None:
                status, answer = call("GET", path, query=query, **auth)
                if not status.startswith("200") or len(json.loads(answer)["items"]) != PAGE:
                    raise SystemExit(f"GET {path}?{query}: {status}, not a full page")

            row["pages"][label] = {"ms": ms_per_request(request), "work": work.of(request)}
        log(f"{size:,} rows: {json.dumps(row['pages'])}")
        rows.append(row)
    app.extensions["api.db"].engine.dispose()
    return {"labels": list(pages), "rows": rows}


def report(database: str, result: dict[str, Any]) -> str:
    work = "VM steps" if database == "sqlite" else "shared buffers"
    labels, rows = result["labels"], result["rows"]
    lines = [
        f"{DATABASES[database]}: ms per request (wall, best of {BATCHES}) / {work} per request",
        "",
        "| rows | " + " | ".join(labels) + " |",
        "|---:|" + "---:|" * len(labels),
    ]
    for row in rows:
        cells = [f"{p['ms']:.3f} / {p['work']:,}" for p in (row["pages"][k] for k in labels)]
        lines.append(f"| {row['size']:,} | " + " | ".join(cells) + " |")
    if len(rows) > 1:
        first, last = rows[0]["pages"], rows[-1]["pages"]
        cells = [
            f"{last[k]['ms'] / first[k]['ms']:.2f}x / {last[k]['work'] / first[k]['work']:.2f}x"
            for k in labels
        ]
        lines.append("| last / first | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway cluster of the host's PostgreSQL binaries (the unit tests' helper)."""
    sys.path.insert(0, str(ROOT / "services" / "api" / "tests"))
    from pg_cluster import Cluster, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("--db postgres needs the PostgreSQL server binaries (initdb, pg_ctl)")
    cluster = Cluster(bindir)
    cluster.start()
    try:
        yield cluster.url()
    finally:
        cluster.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--database-url", help="a PostgreSQL database of yours (instead of --db)")
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="rows per table, comma-separated (default: %(default)s)",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if args.database_url:
        runs = ["sqlite" if args.database_url.startswith("sqlite") else "postgres"]
    else:
        runs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    RESULTS_DIR.mkdir(exist_ok=True)
    for database in runs:
        log(f"{DATABASES[database]}: sizes {', '.join(f'{s:,}' for s in sizes)}")
        if args.database_url:
            result = measure(args.database_url, sizes)
        elif database == "postgres":
            with postgres_cluster() as url:
                result = measure(url, sizes)
        else:
            result = measure(None, sizes)
        path = RESULTS_DIR / f"{stamp}-growth-{database}.json"
        path.write_text(json.dumps({"database": database, **result}, indent=2) + "\n")
        print(report(database, result) + "\n")
        log(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
