"""Shared fixtures.

- ``settings``: app settings pointing at a fresh, migrated SQLite file in the test's tmp dir.
- ``app`` / ``client``: an app built from those settings, and its Flask test client.
- ``make_user``: create a user through the API; returns a ``User`` with its key and auth headers.
- ``postgres_cluster`` / ``postgres_url``: a throwaway PostgreSQL cluster for the session, and an
  empty database in it for each test (``API_TEST_POSTGRES_URL`` names your own server instead).
  Without either it fails and says what to install: a database the API claims to support is
  never silently left untested.

Migrations run once per session into a template file, which each test copies: real Alembic
migrations, without paying for them in every test.
"""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from api_helpers import sqlite_url
from flask import Flask
from flask.testing import FlaskClient
from pg_cluster import Cluster, postgres_bindir
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from api import create_app
from api.core.config import Settings, load_settings
from api.migrate import upgrade


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(load_settings(database_url=sqlite_url(path)))
    return path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    path = tmp_path / "api.sqlite3"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def settings(db_path: Path) -> Settings:
    return load_settings(database_url=sqlite_url(db_path))


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["api.db"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class User:
    id: int
    name: str
    email: str
    api_key: str
    body: dict[str, Any] = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def make_user(client: FlaskClient) -> Callable[..., User]:
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, email: str | None = None) -> User:
        n = next(counter)
        name = name or f"User {n}"
        email = email or f"user{n}@example.com"
        response = client.post("/api/users", json={"name": name, "email": email})
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        return User(body["id"], body["name"], body["email"], body["api_key"], body)

    return make


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster | None]:
    """A cluster of our own, or None when API_TEST_POSTGRES_URL names a server to use."""
    if os.environ.get("API_TEST_POSTGRES_URL"):
        yield None
        return
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL is needed for this test: install the server (Debian/Ubuntu: "
            "apt-get install postgresql; macOS: brew install postgresql) or set "
            "API_TEST_POSTGRES_URL to a server on which the tests may create databases."
        )
    cluster = Cluster(bindir)
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture
def postgres_url(postgres_cluster: Cluster | None) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    server = os.environ.get("API_TEST_POSTGRES_URL") or (
        postgres_cluster and postgres_cluster.url()
    )
    assert server
    name = f"apitest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
