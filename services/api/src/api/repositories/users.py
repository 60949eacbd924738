"""Queries on the users table (hot statements built once and prepared, as in items.py)."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from api.core.statements import Prepared
from api.tables import users, utcnow

_INSERT = Prepared(sa.insert(users).returning(*users.c))
_GET = Prepared(sa.select(users).where(users.c.id == sa.bindparam("user_id")))
_GET_BY_KEY_HASH = Prepared(
    sa.select(users).where(users.c.api_key_hash == sa.bindparam("api_key_hash"))
)
_LIST_AFTER = Prepared(
    sa.select(users)
    .where(users.c.id > sa.bindparam("after_id"))
    .order_by(users.c.id)
    .limit(sa.bindparam("limit"))
)
_DELETE = sa.delete(users).where(users.c.id == sa.bindparam("user_id"))


class EmailTakenError(Exception):
    """The email is already registered (the unique constraint said so)."""


def create(conn: Connection, *, name: str, email: str, api_key_hash: str) -> Row[Any]:
    # No check-then-insert: the unique constraint decides, so two concurrent sign-ups with one
    # email cannot both succeed.
    values = {
        "name": name,
        "email": email,
        "email_lower": email.lower(),
        "api_key_hash": api_key_hash,
        "created_at": utcnow(),
    }
    try:
        return _INSERT.one(conn, values)
    except IntegrityError as exc:
        raise EmailTakenError(email) from exc


def get(conn: Connection, user_id: int) -> Row[Any] | None:
    return _GET.one_or_none(conn, {"user_id": user_id})


def get_by_key_hash(conn: Connection, api_key_hash: str) -> Row[Any] | None:
    return _GET_BY_KEY_HASH.one_or_none(conn, {"api_key_hash": api_key_hash})


def list_after(conn: Connection, *, after_id: int, limit: int) -> list[Row[Any]]:
    return _LIST_AFTER.all(conn, {"after_id": after_id, "limit": limit})


def update(conn: Connection, user_id: int, changes: dict[str, Any]) -> Row[Any] | None:
    """Apply ``changes``; None if the user no longer exists (deleted by a concurrent request)."""
    if "email" in changes:
        changes = {**changes, "email_lower": changes["email"].lower()}
    stmt = sa.update(users).where(users.c.id == user_id).values(**changes).returning(*users.c)
    try:
        return conn.execute(stmt).one_or_none()
    except IntegrityError as exc:
        raise EmailTakenError(changes.get("email", "")) from exc


def delete(conn: Connection, user_id: int) -> None:
    # The items go with the user through ON DELETE CASCADE (foreign keys are on for SQLite too).
    conn.execute(_DELETE, {"user_id": user_id})
