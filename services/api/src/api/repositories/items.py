"""Queries on the items table.

Hot statements are built once, at import, with bind parameters: building a statement and
computing its cache key on every call cost more CPU than SQLite took to run it.
"""

from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row, Select

from api.tables import items, utcnow

_INSERT = sa.insert(items).returning(*items.c)
_GET = sa.select(items).where(items.c.id == sa.bindparam("item_id"))
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
    return conn.execute(_INSERT, values).one()


def get(conn: Connection, item_id: int) -> Row[Any] | None:
    return conn.execute(_GET, {"item_id": item_id}).one_or_none()


@cache
def _visible_stmt(*, with_viewer: bool, with_owner: bool) -> Select[Any]:
    visible = items.c.is_public.is_(sa.true())
    if with_viewer:
        visible = sa.or_(visible, items.c.owner_id == sa.bindparam("viewer_id"))
    stmt = sa.select(items).where(visible, items.c.id > sa.bindparam("after_id"))
    if with_owner:
        stmt = stmt.where(items.c.owner_id == sa.bindparam("owner_id"))
    return stmt.order_by(items.c.id).limit(sa.bindparam("limit"))


def list_visible(
    conn: Connection,
    *,
    viewer_id: int | None,
    owner_id: int | None,
    after_id: int,
    limit: int,
) -> list[Row[Any]]:
    """Items the viewer may see (public ones plus their own), in id order after ``after_id``."""
    stmt = _visible_stmt(with_viewer=viewer_id is not None, with_owner=owner_id is not None)
    params = {"viewer_id": viewer_id, "owner_id": owner_id, "after_id": after_id, "limit": limit}
    return list(conn.execute(stmt, params))


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
