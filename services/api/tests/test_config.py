"""Settings come from the environment, and bad ones stop start-up with one clear message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.core.config import SettingsError, load_settings

SERVICE_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_defaults(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("DATABASE_", "PROXY_FIX_", "LOG_", "MAX_CONTENT", "SQLITE_")):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/api.sqlite3"
    assert settings.proxy_fix_x_for == 1
    assert settings.log_level == "INFO"
    assert settings.max_content_length == 1024 * 1024
    assert settings.sqlite_busy_timeout_ms == 5000


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:p@db:5432/api")
    monkeypatch.setenv("PROXY_FIX_X_FOR", "2")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.proxy_fix_x_for == 2
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_LEVEL", "LOUD"),
        ("PROXY_FIX_X_FOR", "-1"),
        ("PROXY_FIX_X_PROTO", "one"),
        ("MAX_CONTENT_LENGTH", "0"),
        ("DATABASE_URL", "mysql://u:secret@db/api"),
        ("DATABASE_URL", "not a url"),
        ("SQLITE_BUSY_TIMEOUT_MS", "soon"),
    ],
)
def test_bad_settings_raise_a_readable_error(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert name in message
    assert "\n" not in message
    assert "secret" not in message  # values (which may hold passwords) are not echoed


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=SERVICE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "import api.wsgi"],
        [sys.executable, "-m", "api.migrate"],
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "api.wsgi:app"],
    ],
    ids=["wsgi", "migrate", "gunicorn"],
)
def test_entry_points_fail_fast_on_bad_settings(command):
    result = run(command, LOG_LEVEL="LOUD")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Invalid configuration: LOG_LEVEL")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GUNICORN_WORKERS", "many"),
        ("GUNICORN_TIMEOUT", "0"),
        ("GUNICORN_WORKER_CLASS", "eventlet"),
    ],
)
def test_gunicorn_fails_fast_on_bad_gunicorn_settings(name, value):
    result = run([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "api.wsgi:app"], **{name: value})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"Invalid configuration: {name}")


def test_gunicorn_refuses_an_idempotency_lease_longer_than_its_timeout():
    result = run(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "api.wsgi:app"],
        GUNICORN_TIMEOUT="10",
        IDEMPOTENCY_LEASE_SECONDS="30",
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "IDEMPOTENCY_LEASE_SECONDS=30 is longer than GUNICORN_TIMEOUT=10" in result.stderr


def test_the_database_password_comes_from_a_file(tmp_path):
    secret = tmp_path / "db_password"
    secret.write_text("p@ss:/w%rd\n")  # characters a URL would need quoted; the newline goes
    settings = load_settings(
        database_url="postgresql+psycopg://api@db:5432/api", database_password_file=str(secret)
    )
    assert settings.engine_url.password == "p@ss:/w%rd"
    assert settings.engine_url.host == "db"
    assert "p@ss" not in settings.database_url


@pytest.mark.parametrize(("content", "message"), [(None, "cannot be read"), ("\n", "is empty")])
def test_a_bad_password_file_stops_the_start(tmp_path, content, message):
    secret = tmp_path / "db_password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SettingsError, match=f"DATABASE_PASSWORD_FILE {message}"):
        load_settings(database_password_file=str(secret))
