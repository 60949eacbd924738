"""Shared fixtures.

- ``settings``: app settings pointing at a fresh, migrated SQLite file in the test's tmp dir.
- ``app`` / ``client``: an app built from those settings, and its Flask test client.
- ``make_user``: create a user through the API; returns a ``User`` with its key and auth headers.

Migrations run once per session into a template file, which each test copies: real Alembic
migrations, without paying for them in every test.
"""

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from api_helpers import sqlite_url
from flask import Flask
from flask.testing import FlaskClient

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
