"""Queries on the items table."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row

from api.tables import items, utcnow


def create(
    conn: Connection, *, owner_id: int, name: str, description: str, is_public: bool
) -> Row[Any]:
    now = utcnow()
    stmt = (
        sa.insert(items)
        .values(
            owner_id=owner_id,
            name=name,
            description=description,
            is_public=is_public,
            created_at=now,
            updated_at=now,
        )
        .returning(*items.c)
    )
    return conn.execute(stmt).one()


def get(conn: Connection, item_id: int) -> Row[Any] | None:
    return conn.execute(sa.select(items).where(items.c.id == item_id)).one_or_none()


def list_visible(
    conn: Connection,
    *,
    viewer_id: int | None,
    owner_id: int | None,
    after_id: int,
    limit: int,
) -> list[Row[Any]]:
    """Items the viewer may see (public ones plus their own), in id order after ``after_id``."""
    visible = items.c.is_public.is_(sa.true())
    if viewer_id is not None:
        visible = sa.or_(visible, items.c.owner_id == viewer_id)
    stmt = sa.select(items).where(visible, items.c.id > after_id)
    if owner_id is not None:
        stmt = stmt.where(items.c.owner_id == owner_id)
    return list(conn.execute(stmt.order_by(items.c.id).limit(limit)))


def update(conn: Connection, item_id: int, changes: dict[str, Any]) -> Row[Any]:
    stmt = (
        sa.update(items)
        .where(items.c.id == item_id)
        .values(**changes, updated_at=utcnow())
        .returning(*items.c)
    )
    return conn.execute(stmt).one()


def delete(conn: Connection, item_id: int) -> None:
    conn.execute(sa.delete(items).where(items.c.id == item_id))
