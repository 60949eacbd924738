"""The benchmark's floor: the least a Flask app can do on the API's paths. NOT a product.

`bench/run.py` serves this module with the API's own image, gunicorn.conf.py and nginx (see
bench/compose.floor.yaml) and runs measurements F2-F4 against it, so the report shows what ANY
Flask + gunicorn app reaches on this machine on the same path, next to the real API's 2-4.

Deliberately left out, because the point is to measure everything else: request validation,
logging, SQLAlchemy (raw sqlite3 instead), authentication, API keys, error bodies beyond the one
409, migrations. What it keeps from the real API: Flask's request/response cycle, one SQLite
connection per thread with the same pragmas (WAL, synchronous=NORMAL, busy_timeout), and a
write transaction per sign-up (BEGIN IMMEDIATE, INSERT ... RETURNING, COMMIT) under a unique
email constraint. Bodies are trusted: a malformed one gives Flask's 400 or a 500.
"""

import datetime as dt
import sqlite3
import threading

from flask import Flask, abort, request

DB_PATH = "/data/floor.sqlite3"  # the api-data volume; the root filesystem is read-only
# On every answer of the app's routes, so the harness can tell from outside (through nginx)
# that the floor, not the API, is answering.
FLOOR_HEADER = {"X-Bench-Floor": "1"}

app = Flask(__name__)
_local = threading.local()


def connect() -> sqlite3.Connection:
    # Autocommit mode (isolation_level=None): transactions are exactly the BEGINs written below.
    conn = sqlite3.connect(DB_PATH, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def db() -> sqlite3.Connection:
    """This thread's connection (gthread workers keep their threads, so it lives as long)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = connect()
    return conn


# Schema and item 1 at import. Every worker runs this; busy_timeout (set in connect) makes the
# second one wait for the first instead of failing, and IF NOT EXISTS / OR IGNORE make it a no-op.
_init = connect()
_init.execute("PRAGMA journal_mode=WAL")
_init.execute(
    "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)"
)
_init.execute(
    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " is_public INTEGER NOT NULL)"
)
_init.execute("INSERT OR IGNORE INTO items (id, name, is_public) VALUES (1, 'floor item', 1)")
_init.close()


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/api/items/<int:item_id>")
def get_item(item_id: int) -> tuple[dict, int, dict]:
    row = db().execute("SELECT id, name, is_public FROM items WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        abort(404)
    return {"id": row[0], "name": row[1], "is_public": bool(row[2])}, 200, FLOOR_HEADER


@app.post("/api/users")
def create_user() -> tuple[dict, int, dict]:
    body = request.get_json()
    now = dt.datetime.now(dt.UTC).isoformat()
    conn = db()
    conn.execute("BEGIN IMMEDIATE")
    try:
        user_id = conn.execute(
            "INSERT INTO users (name, email, created_at) VALUES (?, ?, ?) RETURNING id",
            (body["name"], body["email"], now),
        ).fetchone()[0]
        conn.execute("COMMIT")
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_CONSTRAINT_UNIQUE:
            raise
        return {"error": "Conflict", "status": 409}, 409, FLOOR_HEADER
    finally:
        # Whatever failed (duplicate, busy, a bad body), the thread's connection must not stay
        # inside the transaction.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    user = {"id": user_id, "name": body["name"], "email": body["email"], "created_at": now}
    return user, 201, FLOOR_HEADER
