"""Queries on the users table."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from api.tables import users, utcnow


class EmailTakenError(Exception):
    """The email is already registered (the unique constraint said so)."""


def create(conn: Connection, *, name: str, email: str, api_key_hash: str) -> Row[Any]:
    # No check-then-insert: the unique constraint decides, so two concurrent sign-ups with one
    # email cannot both succeed.
    stmt = (
        sa.insert(users)
        .values(
            name=name,
            email=email,
            email_lower=email.lower(),
            api_key_hash=api_key_hash,
            created_at=utcnow(),
        )
        .returning(*users.c)
    )
    try:
        return conn.execute(stmt).one()
    except IntegrityError as exc:
        raise EmailTakenError(email) from exc


def get(conn: Connection, user_id: int) -> Row[Any] | None:
    return conn.execute(sa.select(users).where(users.c.id == user_id)).one_or_none()


def get_by_key_hash(conn: Connection, api_key_hash: str) -> Row[Any] | None:
    stmt = sa.select(users).where(users.c.api_key_hash == api_key_hash)
    return conn.execute(stmt).one_or_none()


def list_after(conn: Connection, *, after_id: int, limit: int) -> list[Row[Any]]:
    stmt = sa.select(users).where(users.c.id > after_id).order_by(users.c.id).limit(limit)
    return list(conn.execute(stmt))


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
    conn.execute(sa.delete(users).where(users.c.id == user_id))
