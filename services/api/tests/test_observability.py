"""Access log lines, health probes, and what ProxyFix makes of forwarded headers."""

import json

from api_helpers import sqlite_url
from sqlalchemy import text

from api import create_app
from api.core.config import load_settings


def access_lines(output: str) -> list[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "api.access"]


def test_one_json_line_per_request(settings, capsys):
    app = create_app(settings)  # created here so its log handler writes to the captured stdout
    client = app.test_client()
    capsys.readouterr()
    client.get(
        "/api/users/987", headers={"X-Request-ID": "req-1", "X-Forwarded-For": "203.0.113.7"}
    )
    client.get("/healthz")
    lines = access_lines(capsys.readouterr().out)
    assert len(lines) == 2
    first = lines[0]
    assert first["request_id"] == "req-1"
    assert first["method"] == "GET"
    assert first["path"] == "/api/users/987"
    assert first["status"] == 404
    assert first["remote_addr"] == "203.0.113.7"
    assert isinstance(first["duration_ms"], float)
    assert isinstance(first["pid"], int)
    app.extensions["api.db"].engine.dispose()


def test_location_follows_forwarded_scheme_and_host(client):
    response = client.post(
        "/api/users",
        json={"name": "Alice", "email": "alice@example.com"},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.org"},
    )
    location = response.headers["Location"]
    assert location == f"https://api.example.org/api/users/{response.get_json()['id']}"


def test_proxy_hops_come_from_settings(db_path):
    settings = load_settings(
        database_url=sqlite_url(db_path), proxy_fix_x_for=0, proxy_fix_x_proto=0
    )
    app = create_app(settings)
    response = app.test_client().post(
        "/api/users",
        json={"name": "Alice", "email": "alice@example.com"},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"},
    )
    assert response.headers["Location"].startswith("http://localhost/")
    app.extensions["api.db"].engine.dispose()


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_503_when_not_migrated(app, client):
    with app.extensions["api.db"].write() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert set(response.get_json()) == {"error", "message", "status", "request_id"}
