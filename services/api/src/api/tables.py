"""Database schema (SQLAlchemy Core); Alembic migrations are written against this metadata."""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Stable constraint names, so migrations can refer to them on every dialect.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores them without an offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    # Lower-cased copy of the email: the unique constraint that makes duplicates a 409, computed
    # in Python so that the rule is identical on SQLite and PostgreSQL.
    sa.Column("email_lower", sa.String(320), nullable=False, unique=True),
    sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Never reuse the id of a deleted row: old URLs must not start pointing at someone else.
    sqlite_autoincrement=True,
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "owner_id",
        Id,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False, server_default=""),
    sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sqlite_autoincrement=True,
)
# The list's visibility rule (public items, plus the viewer's own) is served by two indexes, so a
# page reads a range of each instead of walking the primary key past every row the caller may
# not see, and costs the same at any table size (the query: repositories/items.py; measured in
# docs/performance.md, "Cost as the data grows").
#
# Public items: spelt "is_public = true" on both databases. A partial index is used only by a
# query whose WHERE says what the index's WHERE says (the repository uses this expression), and
# `make migration` copies this text into the migration, which runs on both: sa.true() would be
# written 1 on SQLite, which PostgreSQL refuses for a boolean.
public_items = items.c.is_public == sa.literal_column("true")
# Public items in id order (partial: only the public rows are in it) ...
sa.Index("ix_items_public_id", items.c.id, sqlite_where=public_items, postgresql_where=public_items)
# ... and one owner's public or private items in id order (also the foreign key's index).
sa.Index(None, items.c.owner_id, items.c.is_public, items.c.id)

# Machinery rather than domain: the answers of POSTs sent with an Idempotency-Key
# (api/idempotency.py). Neither the key nor the answer is stored in clear.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # SHA-256 of the client's key, then whose key it is: the user's id, or 0 for an anonymous
    # POST (sign-up), where the key alone is the scope.
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, primary_key=True, autoincrement=False),
    # SHA-256 of method, path and canonical JSON body: the same key with another request is a 422.
    sa.Column("request_hash", sa.String(64), nullable=False),
    # The digest of the API key the request was sent with, so a retry with a key that the request
    # itself revoked (a rotation) can still be answered.
    sa.Column("credential_hash", sa.String(64), nullable=True),
    # While the first request runs: who holds the claim and until when (NULL once answered).
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    # The answer (status, headers, body), encrypted with a key derived from the client's key.
    sa.Column("response", sa.LargeBinary(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)
