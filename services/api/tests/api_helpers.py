"""Assertions shared by the test modules (imported as a plain module: tests/ is on sys.path)."""

from pathlib import Path
from typing import Any


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def assert_error(response: Any, status: int, message: str | None = None) -> dict[str, Any]:
    """Assert the standard error shape (and optionally the exact message); return the body."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) >= {"error", "message", "status", "request_id"}
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    if message is not None:
        assert body["message"] == message
    return body
