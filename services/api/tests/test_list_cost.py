"""A page of a list costs the same whatever the table's size (docs/performance.md, "Cost as the
data grows").

Timing cannot show it in a unit test, and a small table hides it (PostgreSQL plans sequential
scans on tiny tables, and a scan of 1,000 rows is fast anyway). So each page is measured with a
cost proxy that counts work, not time, first with 1,000 rows in the table and then with 100,000,
in the same database (brought there by the migrations, whose indexes are the ones measured):

- SQLite: the virtual machine's steps while the statement runs (a progress handler called at
  every step on the raw DB-API connection);
- PostgreSQL: the shared buffers the statement touches (hit + read), from
  ``EXPLAIN (ANALYZE, BUFFERS)`` of exactly the statement and parameters the repository sent,
  both with the plan made for those values and with the generic plan PostgreSQL may keep for a
  prepared statement (psycopg prepares one on its 5th run); the larger counts.

A list that walks the primary key and skips the rows the caller may not see does ~100x more work
at the large size; one that reads ranges of the indexes that serve the visibility rule does the
same (a B-tree level more is all that grows). Each page is also checked against a naive filter of
every row, and every page of a mixed table walked through the cursor.

The rows are written with one ``INSERT ... SELECT`` per size (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL) with explicit ids: the rows the pages show get a block of high
ids, so the filler (the layouts below: what a list must skip, or must not be fooled by) lies in
front of them.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_helpers import sqlite_url
from sqlalchemy import Connection, Engine, event, text

from api.core.config import load_settings
from api.core.db import build_engine
from api.migrate import upgrade
from api.repositories import items as items_repo
from api.repositories import users as users_repo

SMALL, LARGE = 1_000, 100_000
MAX_RATIO = 1.5
# The largest page the API serves (limit=100, plus the row that tells whether there is a next
# one). With pages of 20, one B-tree level more in the large table's indexes (a buffer per index
# read on PostgreSQL) would weigh as much as a few of the page's rows.
LIMIT = 101

# The users (explicit ids). OWNER's page mixes public and private items; OTHER owns nothing and
# looks at everyone else's; FILTERED is the owner the `owner_id` filter asks for; BULK owns the
# rest, and so do the OTHERS (a hundred users, in one layout). The users' list grows from
# FIRST_FILLER_USER on.
OWNER, OTHER, FILTERED, BULK = 1, 2, 3, 4
OTHERS = range(5, 105)
FIRST_FILLER_USER = OTHERS.stop
# The rows the pages show, public and private, of OWNER, FILTERED and BULK: after the filler.
PAGE_ROWS_FROM, PAGE_ROWS = 10_000_000, 6 * LIMIT  # LIMIT public and LIMIT private each

# Filler layouts: the id, owner and is_public of filler row i, as SQL both databases evaluate
# alike.
LAYOUTS = {
    # Others' private items (a quarter of them FILTERED's): every filler row is one a page of
    # items must skip, and FILTERED's are ones the owner_id filter must skip.
    "private filler": ("i", f"CASE WHEN i % 4 = 0 THEN {FILTERED} ELSE {BULK} END", "1 = 0"),
    # Public items of OWNER and FILTERED: the owner's own page must not skip their public items
    # to reach their private ones, nor the owner_id filter the public ones of someone else.
    "public filler": ("i", f"CASE WHEN i % 2 = 0 THEN {OWNER} ELSE {FILTERED} END", "1 = 1"),
    # Public items of a hundred other users, and a tenth of the rows FILTERED's, public and
    # private, all stored after the rows of the pages: FILTERED owns a tenth of the table, but
    # none of it before the pages. A planner that takes FILTERED's rows to be spread evenly
    # through the ids walks them from the start and skips everyone else's rows.
    "a late big owner": (
        f"CASE WHEN i % 10 = 0 THEN {PAGE_ROWS_FROM + PAGE_ROWS} + i ELSE i END",
        f"CASE WHEN i % 10 = 0 THEN {FILTERED} ELSE {OTHERS.start} + i % {len(OTHERS)} END",
        "i % 10 != 0 OR i % 20 = 0",
    ),
}


@dataclass(frozen=True)
class Page:
    """One list request: who asks (``viewer``), and the owner_id filter (``owner``)."""

    viewer: int | None
    owner: int | None


CASES = {
    "anonymous": Page(viewer=None, owner=None),
    "another user": Page(viewer=OTHER, owner=None),
    "the owner's own mixed page": Page(viewer=OWNER, owner=None),
    "owner_id filter, anonymous": Page(viewer=None, owner=FILTERED),
    "owner_id filter, another user": Page(viewer=OTHER, owner=FILTERED),
    "owner_id filter, the owner": Page(viewer=OWNER, owner=OWNER),
    "owner_id filter, a big owner": Page(viewer=FILTERED, owner=FILTERED),
}
USERS_LIST = "users' list"

TIMESTAMP = "'2026-01-01 00:00:00.000000'"


def _series(dialect: str, insert: str, select: str) -> str:
    """``insert`` fed by ``select`` for each i from :first to :last (both included)."""
    if dialect == "sqlite":
        return (
            "WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last) "
            f"{insert} {select} FROM n"
        )
    series = "generate_series(CAST(:first AS bigint), CAST(:last AS bigint))"
    return f"{insert} {select} FROM {series} AS n(i)"


def _add_users(conn: Connection, first: int, last: int) -> None:
    insert = "INSERT INTO users (id, name, email, email_lower, api_key_hash, created_at)"
    select = (
        "SELECT i, 'user ' || i, 'user' || i || '@example.com', 'user' || i || '@example.com', "
        f"'key' || i, {TIMESTAMP}"
    )
    conn.execute(text(_series(conn.dialect.name, insert, select)), {"first": first, "last": last})


def _add_items(conn: Connection, first: int, last: int, id_: str, owner: str, public: str) -> None:
    insert = "INSERT INTO items (id, owner_id, name, is_public, created_at, updated_at)"
    select = f"SELECT {id_}, {owner}, 'item ' || i, {public}, {TIMESTAMP}, {TIMESTAMP}"
    conn.execute(text(_series(conn.dialect.name, insert, select)), {"first": first, "last": last})


def _grow(engine: Engine, layout: str, first: int, last: int) -> None:
    """Add filler items ``first``..``last``, then let PostgreSQL's planner see them (what
    autovacuum does after a bulk load)."""
    with engine.begin() as conn:
        _add_items(conn, first, last, *LAYOUTS[layout])
    _analyze(engine, "items")


def _analyze(engine: Engine, table: str) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text(f"ANALYZE {table}"))


def _populate(engine: Engine) -> None:
    """The users, and the rows the pages show: OWNER, FILTERED and BULK in turn, public and
    private alternating (so each one's public and private items interleave)."""
    with engine.begin() as conn:
        _add_users(conn, OWNER, OTHERS.stop - 1)
        owner = f"CASE i % 3 WHEN 0 THEN {OWNER} WHEN 1 THEN {FILTERED} ELSE {BULK} END"
        first, last = PAGE_ROWS_FROM, PAGE_ROWS_FROM + PAGE_ROWS - 1
        _add_items(conn, first, last, "i", owner, "i % 2 = 0")


def _fetch(conn: Connection, case: str, after_id: int = 0, limit: int = LIMIT) -> list[int]:
    """The ids the repository returns for ``case`` (the routes pass their arguments through)."""
    if case == USERS_LIST:
        rows = users_repo.list_after(conn, after_id=after_id, limit=limit)
    else:
        page = CASES[case]
        rows = items_repo.list_visible(
            conn, viewer_id=page.viewer, owner_id=page.owner, after_id=after_id, limit=limit
        )
    return [row.id for row in rows]


def _expected(conn: Connection) -> dict[str, list[int]]:
    """Per case, every id it may show, in order: the rule applied naively to every row."""
    rows = list(conn.execute(text("SELECT id, owner_id, is_public FROM items ORDER BY id")))
    expected = {
        case: [
            id_
            for id_, owner_id, is_public in rows
            if (is_public or owner_id == page.viewer) and page.owner in (None, owner_id)
        ]
        for case, page in CASES.items()
    }
    expected[USERS_LIST] = list(conn.execute(text("SELECT id FROM users ORDER BY id")).scalars())
    return expected


def _sqlite_steps(conn: Connection, case: str) -> int:
    raw = conn.connection.dbapi_connection
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    raw.set_progress_handler(count, 1)  # type: ignore[union-attr]
    try:
        _fetch(conn, case)
    finally:
        raw.set_progress_handler(None, 1)  # type: ignore[union-attr]
    return steps


def _postgres_buffers(conn: Connection, case: str) -> int:
    """Shared buffers of the statement the repository sends, with the plan made for its values
    and with the plan made for any values: psycopg prepares a statement on its 5th run, and
    PostgreSQL may then keep one generic plan for all of them. The larger of the two."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", record)
    try:
        _fetch(conn, case)
    finally:
        event.remove(conn, "before_cursor_execute", record)
    [(statement, parameters)] = sent
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m[1]) + 1}", statement)
    values = ", ".join("NULL" if parameters[n] is None else str(int(parameters[n])) for n in names)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PREPARE page AS {numbered}")
    buffers = []
    try:
        for plan_cache_mode in ("force_custom_plan", "force_generic_plan"):
            cursor.execute(f"SET plan_cache_mode = {plan_cache_mode}")
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE page({values})")
            plan = cursor.fetchone()[0]  # type: ignore[index]
            top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
            buffers.append(top["Shared Hit Blocks"] + top["Shared Read Blocks"])
    finally:
        cursor.execute("DEALLOCATE page")
        cursor.execute("RESET plan_cache_mode")
        cursor.close()
    return max(buffers)


def _measure(engine: Engine, cases: list[str]) -> dict[str, tuple[int, list[int]]]:
    """Per case: the cost proxy of its first page, and the ids of that page."""
    cost = _sqlite_steps if engine.dialect.name == "sqlite" else _postgres_buffers
    measured = {}
    with engine.connect() as conn:
        for case in cases:
            ids = _fetch(conn, case)  # once before: the statement prepared, the pages cached
            measured[case] = (cost(conn, case), ids)
    return measured


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database brought to the newest revision by the migrations (their indexes, not
    tables.py's, are the ones measured)."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "cost.sqlite3")
    else:
        url = request.getfixturevalue("postgres_url")
    settings = load_settings(database_url=url)
    upgrade(settings)
    engine = build_engine(settings)
    yield engine
    engine.dispose()


def _assert_flat(small: dict[str, tuple[int, list[int]]], large: dict[str, tuple[int, list[int]]]):
    costs = {case: (small[case][0], large[case][0]) for case in small}
    over = {case: cost for case, cost in costs.items() if cost[1] > MAX_RATIO * cost[0]}
    assert not over, (
        f"cost at {SMALL:,} and {LARGE:,} rows, over {MAX_RATIO}x: {over} (all: {costs})"
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_page_of_items_costs_the_same_at_100_times_the_rows(engine: Engine, layout: str) -> None:
    _populate(engine)
    _grow(engine, layout, 1, SMALL)
    small = _measure(engine, list(CASES))
    with engine.connect() as conn:
        expected_small = _expected(conn)
    _grow(engine, layout, SMALL + 1, LARGE)
    large = _measure(engine, list(CASES))
    with engine.connect() as conn:
        expected_large = _expected(conn)

    for case in CASES:
        assert small[case][1] == expected_small[case][:LIMIT], f"{case}, {SMALL} rows"
        assert large[case][1] == expected_large[case][:LIMIT], f"{case}, {LARGE} rows"
    _assert_flat(small, large)


def test_a_page_of_users_costs_the_same_at_100_times_the_rows(engine: Engine) -> None:
    """The users' list has no filter: keyset on the primary key, flat by construction."""
    measured, added = [], 0
    for size in (SMALL, LARGE):
        with engine.begin() as conn:
            _add_users(conn, FIRST_FILLER_USER + added, FIRST_FILLER_USER + size - 1)
        added = size
        _analyze(engine, "users")
        measured.append(_measure(engine, [USERS_LIST]))
        with engine.connect() as conn:
            assert measured[-1][USERS_LIST][1] == _expected(conn)[USERS_LIST][:LIMIT]
    _assert_flat(*measured)


def test_walking_every_page_shows_what_the_rule_allows(engine: Engine) -> None:
    """On a table that mixes every layout, page by page through the cursor, pages of 7."""
    _populate(engine)
    for n, layout in enumerate(LAYOUTS):
        _grow(engine, layout, 150 * n + 1, 150 * (n + 1))
    with engine.connect() as conn:
        everything = _expected(conn)
        for case, expected in everything.items():
            seen: list[int] = []
            while page := _fetch(conn, case, after_id=seen[-1] if seen else 0, limit=7):
                assert len(page) <= 7, case
                seen += page
            assert seen == expected, case
            assert len(expected) > 14, case  # more than two pages
