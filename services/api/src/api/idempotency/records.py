"""The ``idempotency_keys`` table's statements: claim a key, store an answer, give a key back.

No Flask here: ``api.idempotency`` turns the outcomes into answers. Every function runs inside a
transaction that its caller opened.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection, Row
from sqlalchemy.dialects import postgresql, sqlite

from api.tables import idempotency_keys as records
from api.tables import users, utcnow

ANONYMOUS = 0  # user_id of records made without authentication (no user has id 0)

# Bind names differ from the column names: UPDATE reserves those for its SET clause.
_WHERE_KEY = sa.and_(
    records.c.key_hash == sa.bindparam("b_key_hash"),
    records.c.user_id == sa.bindparam("b_user_id"),
)
_DELETE_EXPIRED = sa.delete(records).where(records.c.expires_at < sa.bindparam("now"))
_GET_FOR_UPDATE = sa.select(records).where(_WHERE_KEY).with_for_update()
_TAKE_OVER = sa.update(records).where(_WHERE_KEY)
_COMPLETE = sa.update(records).where(_WHERE_KEY, records.c.claim_token == sa.bindparam("token"))
_RELEASE = sa.delete(records).where(_WHERE_KEY, records.c.claim_token == sa.bindparam("token"))
_BY_CREDENTIAL = (
    sa.select(records)
    # Only while the user exists: a deleted account's old key replays nothing.
    .join(users, users.c.id == records.c.user_id)
    .where(
        records.c.key_hash == sa.bindparam("key_hash"),
        records.c.credential_hash == sa.bindparam("credential_hash"),
        records.c.response.is_not(None),
        records.c.expires_at > sa.bindparam("now"),
    )
)
# INSERT ... ON CONFLICT DO NOTHING: of two requests that claim one key at once, one inserts.
# RETURNING says which: rowcount is not reliable for this statement on every driver.
_INSERT = {
    "postgresql": postgresql.insert(records).on_conflict_do_nothing().returning(records.c.user_id),
    "sqlite": sqlite.insert(records).on_conflict_do_nothing().returning(records.c.user_id),
}


@dataclass(frozen=True)
class Claim:
    """One request's hold on a key: whose key, which request, and the token that proves it."""

    key: str
    key_hash: str
    user_id: int
    request_hash: str
    token: str

    @property
    def where(self) -> dict[str, object]:
        return {"b_key_hash": self.key_hash, "b_user_id": self.user_id}

    @property
    def context(self) -> bytes:
        # Binds a sealed answer to its record: it cannot be moved to another key, user or request.
        return f"{self.key_hash}:{self.user_id}:{self.request_hash}".encode()


@dataclass(frozen=True)
class Outcome:
    """What ``claim`` found: the key is now ours, or an answer the request gets at once."""

    kind: Literal["claimed", "replay", "mismatch", "busy"]
    sealed: bytes | None = None  # the stored answer, for "replay"
    retry_after: timedelta = timedelta(0)  # for "busy"


def claim(
    conn: Connection, claim: Claim, credential_hash: str | None, *, ttl: timedelta, lease: timedelta
) -> Outcome:
    """Claim the key for this request (and delete expired records: no cron needed)."""
    now = utcnow()
    conn.execute(_DELETE_EXPIRED, {"now": now})
    values = {
        "request_hash": claim.request_hash,
        "credential_hash": credential_hash,
        "claim_token": claim.token,
        "lease_until": now + lease,
        "response": None,
        "created_at": now,
        "expires_at": now + ttl,
    }
    row: Row[Any] | None = conn.execute(_GET_FOR_UPDATE, claim.where).one_or_none()
    if row is None:
        row_values = {"key_hash": claim.key_hash, "user_id": claim.user_id, **values}
        inserted = conn.execute(_INSERT[conn.dialect.name], row_values).first()
        return Outcome("claimed") if inserted is not None else Outcome("busy", retry_after=lease)
    if row.request_hash != claim.request_hash:
        return Outcome("mismatch")
    if row.response is not None:
        return Outcome("replay", sealed=row.response)
    if row.lease_until > now:
        return Outcome("busy", retry_after=row.lease_until - now)
    # The request that held the claim died before it answered, and so wrote nothing: take over.
    conn.execute(_TAKE_OVER.values(**values), claim.where)
    return Outcome("claimed")


def complete(conn: Connection, claim: Claim, sealed: bytes) -> bool:
    """Store the answer; False if the claim was lost (its lease ran out and a retry took over)."""
    stored = conn.execute(
        _COMPLETE.values(response=sealed, claim_token=None, lease_until=None),
        {**claim.where, "token": claim.token},
    )
    return stored.rowcount == 1


def release(conn: Connection, claim: Claim) -> None:
    """Delete the claim (not a stored answer: completing clears the token)."""
    conn.execute(_RELEASE, {**claim.where, "token": claim.token})


def find_by_credential(conn: Connection, key_hash: str, credential_hash: str) -> Row[Any] | None:
    """The live answer stored for this key and made with this API key, if any."""
    found = conn.execute(
        _BY_CREDENTIAL,
        {"key_hash": key_hash, "credential_hash": credential_hash, "now": utcnow()},
    )
    return found.first()
