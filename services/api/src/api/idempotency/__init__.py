"""``Idempotency-Key`` on every POST: a retried request gets the first answer, and runs once.

The reference is the IETF httpapi draft "The Idempotency-Key HTTP Header Field". A client that
sends a POST with a key (16 to 255 printable ASCII characters, bare or as a quoted string) and
does not get the answer (a timeout, a 502, a dropped connection) sends it again with the same key:

- the first request with a key claims it (its own short transaction, with a lease), then runs the
  view inside one *request transaction*; the view's writes and the stored answer commit together,
  so there is never a write without its answer, nor an answer without its write;
- a retry with the same key and the same request (method, path, canonical JSON body) gets the
  stored answer, marked ``Idempotent-Replayed: true``, and changes nothing;
- the same key with another request is a 422; a retry while the first still runs is a 409 with
  ``Retry-After``. A claim whose request died (a killed worker) lapses with its lease, no longer
  than gunicorn's timeout, and the next retry runs the request, which had written nothing;
- only 2xx and 4xx answers are kept (24 hours by default), never a 5xx: after a 5xx the claim is
  released and a retry runs again.

Keys are scoped to the user (0 = anonymous, for sign-up). A retry of an API-key rotation with the
old key, which that rotation revoked, is answered from its record (``_replay_for_credential``).
Records are encrypted (core/security.py) and expired ones are deleted on each claim: no cron.
This module is the Flask side; ``records.py`` holds the SQL.
"""

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest

from api.auth import optional_user, presented_key_hash, view_auth_policy
from api.core.config import Settings
from api.core.security import idempotency_key_digest, seal, unseal
from api.extensions import get_db
from api.idempotency import records
from api.idempotency.records import ANONYMOUS, Claim
from api.web.errors import error_response
from api.web.metrics import count_database_error, count_idempotent_replay
from api.web.request_log import current_request_id
from api.web.view_models import current_view_model

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"[\x20\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]{16,255}")
# What a replay repeats besides status and body.
_KEPT_HEADERS = ("Content-Type", "Location", "Link")


@dataclass(frozen=True)
class _Policy:
    ttl: timedelta
    lease: timedelta


def _presented_key() -> str | None:
    value = request.headers.get(HEADER)
    if value is None:
        return None
    # The draft defines the field as a Structured Field string ("..."); bare values are common.
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    # No '"', '\\' or ',': two Idempotency-Key headers reach a WSGI app joined by ", ".
    if not _KEY.fullmatch(value):
        raise BadRequest(
            f"{HEADER} must be one value of 16 to 255 printable ASCII characters, "
            "without quotes, backslashes or commas."
        )
    return value


def _request_hash() -> str:
    """Method, path and body; a JSON body in canonical form: key order and spacing do not count."""
    body: bytes
    data = request.get_json(silent=True) if current_view_model("body") is not None else None
    if data is not None:
        body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    else:
        body = request.get_data(cache=True)
    digest = hashlib.sha256(f"{request.method}\0{request.path}\0".encode())
    digest.update(body)
    return digest.hexdigest()


def _new_claim(key: str, user_id: int) -> Claim:
    return Claim(
        key=key,
        key_hash=idempotency_key_digest(key),
        user_id=user_id,
        request_hash=_request_hash(),
        token=secrets.token_hex(16),
    )


# --- answers ------------------------------------------------------------------------------------


def _replay(claim: Claim, sealed: bytes) -> Response:
    count_idempotent_replay()
    stored = json.loads(unseal(claim.key, sealed, claim.context))
    body = stored["body"]
    if stored["status"] >= 400:
        # An error body names its request; every error names the one that it answers.
        body = json.dumps({**json.loads(body), "request_id": current_request_id()})
    response = current_app.response_class(body, status=stored["status"], headers=stored["headers"])
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _seal(claim: Claim, response: Response) -> bytes:
    stored = {
        "status": response.status_code,
        "headers": [[k, v] for k in _KEPT_HEADERS if (v := response.headers.get(k)) is not None],
        "body": response.get_data(as_text=True),
    }
    return seal(claim.key, json.dumps(stored).encode(), claim.context)


def _mismatch() -> Response:
    return error_response(
        422,
        f"This {HEADER} was already used for a different request.",
        errors={HEADER: "reused with another method, path or body"},
    )


def _in_flight(retry_after: timedelta) -> Response:
    return error_response(
        409,
        f"A request with this {HEADER} is still being processed. Retry later.",
        headers=[("Retry-After", str(max(1, int(retry_after.total_seconds()) + 1)))],
    )


def _release(claim: Claim) -> None:
    """Give the key back after a 5xx, so that a retry runs the request again."""
    try:
        with get_db().write() as conn:
            records.release(conn, claim)
    except SQLAlchemyError as exc:  # the lease runs out on its own
        count_database_error()
        logger.warning(
            "could not release an idempotency claim", extra={"fields": {"error": repr(exc)}}
        )


# --- request hooks ------------------------------------------------------------------------------


def _replay_for_credential() -> Response | None:
    """Before authentication: answer a retry from the record its own API key made.

    This is what lets a client whose rotation answer was lost retry with the old key, which that
    rotation revoked. Any other request with a revoked key goes on to a 401.
    """
    if request.method != "POST" or view_auth_policy(request.endpoint) is None:
        return None
    credential_hash = presented_key_hash()
    try:
        key = _presented_key()
    except BadRequest:
        return None  # answered in full by _begin, after authentication
    if key is None or credential_hash is None:
        return None
    claim = _new_claim(key, ANONYMOUS)
    with get_db().read() as conn:
        row = records.find_by_credential(conn, claim.key_hash, credential_hash)
    if row is None or row.request_hash != claim.request_hash:
        return None
    return _replay(Claim(key, claim.key_hash, row.user_id, row.request_hash, ""), row.response)


def _begin() -> Response | None:
    if request.method != "POST" or request.endpoint is None:
        return None
    key = _presented_key()
    if key is None:
        return None
    user = optional_user()
    claim = _new_claim(key, user.id if user is not None else ANONYMOUS)
    db = get_db()
    policy: _Policy = current_app.extensions["api.idempotency"]
    with db.write() as conn:
        outcome = records.claim(
            conn, claim, presented_key_hash(), ttl=policy.ttl, lease=policy.lease
        )
    if outcome.kind == "mismatch":
        return _mismatch()
    if outcome.kind == "busy":
        return _in_flight(outcome.retry_after)
    if outcome.kind == "replay":
        assert outcome.sealed is not None
        return _replay(claim, outcome.sealed)
    try:
        db.begin_request_transaction()
    except BaseException:
        _release(claim)
        raise
    g.idempotency_claim = claim
    return None


def _finish(response: Response) -> Response:
    claim: Claim | None = g.pop("idempotency_claim", None)
    if claim is None:
        return response
    db = get_db()
    if response.status_code >= 500:
        db.end_request_transaction(commit=False)
        _release(claim)
        return response
    try:
        conn = db.request_connection()
        assert conn is not None
        if not records.complete(conn, claim, _seal(claim, response)):
            # Our lease ran out and a retry took the key over: it will answer, not us.
            db.end_request_transaction(commit=False)
            return _in_flight(current_app.extensions["api.idempotency"].lease)
        db.end_request_transaction(commit=True)
    except SQLAlchemyError as exc:
        count_database_error()
        db.end_request_transaction(commit=False)
        _release(claim)
        logger.warning(
            "could not store an idempotent answer", extra={"fields": {"error": repr(exc)}}
        )
        return error_response(
            503,
            "The database is temporarily unavailable. Please retry.",
            headers=[("Retry-After", "1")],
        )
    return response


def _teardown(_exc: BaseException | None) -> None:
    # Only if _finish did not run (an exception escaped every handler): roll back, give back.
    claim: Claim | None = g.pop("idempotency_claim", None)
    if claim is not None:
        get_db().end_request_transaction(commit=False)
        _release(claim)


def init_replay_for_credential(app: Flask) -> None:
    """Register before authentication (see ``_replay_for_credential``)."""
    app.before_request(_replay_for_credential)


def init_idempotency(app: Flask, settings: Settings) -> None:
    """Register after authentication and the JSON body checks: the claim needs both."""
    app.extensions["api.idempotency"] = _Policy(
        ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
        lease=timedelta(seconds=settings.idempotency_lease_seconds),
    )
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_teardown)
