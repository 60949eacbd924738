"""Queries on the items table.

Hot statements are built once, at import, with bind parameters, and run as ``Prepared``
statements on the driver's cursor (api/core/statements.py): building a statement on every call,
and SQLAlchemy's execution path, each cost more CPU than SQLite took to run it.
"""

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection, Row, Select
from sqlalchemy.dialects.postgresql import array as postgresql_array

from api.core.statements import Prepared
from api.tables import items, public_items, utcnow

_INSERT = Prepared(sa.insert(items).returning(*items.c))
_GET = Prepared(sa.select(items).where(items.c.id == sa.bindparam("item_id")))
_DELETE = sa.delete(items).where(items.c.id == sa.bindparam("item_id"))


def create(
    conn: Connection, *, owner_id: int, name: str, description: str, is_public: bool
) -> Row[Any]:
    now = utcnow()
    values = {
        "owner_id": owner_id,
        "name": name,
        "description": description,
        "is_public": is_public,
        "created_at": now,
        "updated_at": now,
    }
    return _INSERT.one(conn, values)


def get(conn: Connection, item_id: int) -> Row[Any] | None:
    return _GET.one_or_none(conn, {"item_id": item_id})


# The list: public items plus the viewer's own, in id order after a cursor. Each branch below is
# one range of an index of tables.py, read in the index's order with the LIMIT inside it, and a
# viewer's page merges two branches in id order: a page reads about `limit` rows whatever the
# table holds. Neither database does that with "is_public OR owner_id = viewer" on its own: both
# walked the primary key and skipped every row the caller may not see (17 ms a page at 400,000
# rows on SQLite). Plans and measurements: docs/performance.md, "Cost as the data grows".
_AFTER = items.c.id > sa.bindparam("after_id")
_LIMIT: sa.BindParameter[int] = sa.bindparam("limit")


def _public() -> Select[Any]:
    """Public items after the cursor: the partial index of public items, in id order. The WHERE
    must say what the index's WHERE says (``public_items``), or neither database uses it."""
    return sa.select(items).where(public_items, _AFTER).order_by(items.c.id).limit(_LIMIT)


def _owners(owner_param: str, *, public: bool, postgresql: bool) -> Select[Any]:
    """One owner's public or private items after the cursor: a range of the index on
    (owner_id, is_public, id).

    SQLite seeks it from plain equalities. Given those, PostgreSQL may instead walk the primary key
    (or the public items' index) and skip other owners' rows, betting that the owner's rows are
    spread evenly through the ids. They seldom are (a user's items are recent, or old), and the
    plan it prepares for any owner (psycopg prepares a statement on its 5th run) makes that bet
    whenever the table has few owners: a page of 20 read all 100,000 rows. So for PostgreSQL the
    owner is matched with ``= ANY(ARRAY[owner])`` and the rows ordered by (owner_id, id): the
    same rows and order, but the planner no longer knows that owner_id is fixed, so only this
    index gives that order without sorting every row the owner has.
    """
    owner = sa.bindparam(owner_param, type_=items.c.owner_id.type)
    visibility = items.c.is_public == (sa.true() if public else sa.false())
    if postgresql:
        owner_matches = items.c.owner_id == sa.any_(postgresql_array([owner]))
        order: tuple[sa.Column[Any], ...] = (items.c.owner_id, items.c.id)
    else:
        owner_matches, order = items.c.owner_id == owner, (items.c.id,)
    return sa.select(items).where(owner_matches, visibility, _AFTER).order_by(*order).limit(_LIMIT)


def _merged(*ranges: Select[Any]) -> Select[Any]:
    """The first ``limit`` rows of disjoint ``ranges``, in id order: a UNION ALL of the ranges,
    each limited on its own, which both planners merge without reading past the page."""
    union = sa.union_all(*(sa.select(r.subquery()) for r in ranges)).subquery("visible")
    return sa.select(union).order_by(union.c.id).limit(_LIMIT)


class _Lists(NamedTuple):
    public: Prepared  # anonymous
    public_and_own: Prepared  # a signed-in viewer
    owners_public: Prepared  # owner_id=, asked by anyone but that owner
    owners_all: Prepared  # owner_id=, asked by that owner


def _lists(*, postgresql: bool) -> _Lists:
    def owners(public: bool, param: str = "owner_id") -> Select[Any]:
        return _owners(param, public=public, postgresql=postgresql)

    return _Lists(
        public=Prepared(_public()),
        public_and_own=Prepared(_merged(_public(), owners(public=False, param="viewer_id"))),
        owners_public=Prepared(owners(public=True)),
        owners_all=Prepared(_merged(owners(public=True), owners(public=False))),
    )


_LISTS, _LISTS_POSTGRESQL = _lists(postgresql=False), _lists(postgresql=True)


def list_visible(
    conn: Connection,
    *,
    viewer_id: int | None,
    owner_id: int | None,
    after_id: int,
    limit: int,
) -> list[Row[Any]]:
    """Items the viewer may see (public ones plus their own), in id order after ``after_id``."""
    lists = _LISTS_POSTGRESQL if conn.dialect.name == "postgresql" else _LISTS
    if owner_id is None:
        stmt = lists.public if viewer_id is None else lists.public_and_own
    else:
        stmt = lists.owners_all if owner_id == viewer_id else lists.owners_public
    params = {"viewer_id": viewer_id, "owner_id": owner_id, "after_id": after_id, "limit": limit}
    return stmt.all(conn, params)


def update(conn: Connection, item_id: int, changes: dict[str, Any]) -> Row[Any]:
    stmt = (
        sa.update(items)
        .where(items.c.id == item_id)
        .values(**changes, updated_at=utcnow())
        .returning(*items.c)
    )
    return conn.execute(stmt).one()


def delete(conn: Connection, item_id: int) -> None:
    conn.execute(_DELETE, {"item_id": item_id})
