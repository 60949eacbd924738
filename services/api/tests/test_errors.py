"""Every error is the same JSON shape, whoever produced it."""

import json

import pytest
from api_helpers import assert_error
from flask import abort
from sqlalchemy.exc import OperationalError

from api import create_app
from api.core.logging import JsonFormatter


@pytest.fixture
def app_with_failing_routes(settings):
    """A test-only app with routes that fail in ways the real routes should never fail."""
    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret connection string postgres://u:hunter2@db")

    @app.get("/db-down")
    def db_down():
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    @app.get("/teapot")
    def teapot():
        abort(418, description="Short and stout.")

    yield app
    app.extensions["api.db"].engine.dispose()


def test_unknown_route_is_json_404(client):
    body = assert_error(client.get("/no/such/route"), 404)
    assert body["error"] == "Not Found"


def test_wrong_method_is_405_with_allow(client):
    response = client.put("/api/users")
    body = assert_error(response, 405)
    assert body["error"] == "Method Not Allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_too_large_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 100
    response = client.post("/api/users", json={"name": "A" * 200, "email": "a@example.com"})
    assert assert_error(response, 413)["error"] == "Request Entity Too Large"


def test_abort_description_becomes_message(app_with_failing_routes):
    body = assert_error(app_with_failing_routes.test_client().get("/teapot"), 418)
    assert body["message"] == "Short and stout."
    assert body["error"] == "I'm a teapot"


def test_unhandled_exception_is_opaque_500_and_logged(app_with_failing_routes, caplog):
    response = app_with_failing_routes.test_client().get("/boom")
    body = assert_error(response, 500)
    assert body["error"] == "Internal Server Error"
    assert "hunter2" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.getMessage() == "unhandled exception"]
    assert len(logged) == 1
    line = json.loads(JsonFormatter().format(logged[0]))
    assert line["request_id"] == body["request_id"]
    assert line["path"] == "/boom"
    assert "RuntimeError" in line["exc_info"]


def test_database_errors_are_503_with_retry_after(app_with_failing_routes):
    response = app_with_failing_routes.test_client().get("/db-down")
    assert_error(response, 503)
    assert response.headers["Retry-After"] == "1"


def test_401_has_www_authenticate(client):
    response = client.get("/api/users/me")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "bearer wrong-key", "Bearer a b"],
)
def test_bad_credentials_are_401(client, header):
    response = client.get("/api/users/me", headers={"Authorization": header})
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_bearer_scheme_is_case_insensitive(client, make_user):
    user = make_user()
    response = client.get("/api/users/me", headers={"Authorization": f"bearer {user.api_key}"})
    assert response.status_code == 200


def test_request_id_is_taken_when_sane(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.DEF_4"})
    assert response.headers["X-Request-ID"] == "abc-123.DEF_4"
    body = assert_error(client.get("/nope", headers={"X-Request-ID": "abc-123.DEF_4"}), 404)
    assert body["request_id"] == "abc-123.DEF_4"


@pytest.mark.parametrize("incoming", ["", "x" * 129, "has space", "evil\u00e9", "a/b", "<script>"])
def test_insane_request_ids_are_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    generated = response.headers["X-Request-ID"]
    assert generated != incoming
    assert len(generated) == 32
    assert int(generated, 16) >= 0
