"""CORS (web/cors.py): preflights answered before every check, headers on every answer, off by
default, and CORS_ALLOWED_ORIGINS refused at start when it holds something that is not an origin,
by the API and by nginx alike."""

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from api_helpers import assert_error, sqlite_url
from sqlalchemy import text

from api import create_app
from api.core.config import SettingsError, load_settings
from api.web import cors

APP = "https://app.example.com"
LOCAL = "http://localhost:5173"
OTHER = "https://evil.example.net"
REPO = Path(__file__).resolve().parents[3]

PREFLIGHT_HEADERS = "authorization, content-type, idempotency-key, x-request-id"


@pytest.fixture
def settings(db_path):
    """This module's app (and so client and make_user) has CORS on for APP and LOCAL."""
    return load_settings(database_url=sqlite_url(db_path), cors_allowed_origins=f"{APP},{LOCAL}")


def preflight(client, path, method="POST", origin=APP, headers=PREFLIGHT_HEADERS):
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=request_headers)


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def varies_on_origin(response) -> bool:
    return "origin" in {value.lower() for value in response.vary}


def assert_allowed(response, origin=APP):
    """The CORS headers of an actual (not preflight) answer for an allowed origin."""
    assert response.headers["Access-Control-Allow-Origin"] == origin
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == set(cors.EXPOSE_HEADERS)
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert varies_on_origin(response)
    # One value each: a header listed twice is a CORS failure in browsers.
    assert len(response.headers.getlist("Access-Control-Allow-Origin")) == 1


def assert_refused(response):
    """An answer for another origin, or without Origin: no CORS header, but Vary: Origin."""
    assert cors_headers(response) == {}
    assert varies_on_origin(response)


# --- preflights -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/items"),
        ("PATCH", "/api/items/1"),
        ("DELETE", "/api/items/1"),
        ("PATCH", "/api/users/me"),
        ("POST", "/api/users/me/api-key"),
        ("POST", "/api/users"),
        ("GET", "/api/items"),
    ],
)
def test_a_preflight_from_an_allowed_origin_gets_the_cors_answer(app, client, method, path):
    # No Authorization, no body, no Content-Type: a preflight never has them, and the hooks that
    # would answer 401, 400 or 415 must not see it.
    response = preflight(client, path, method)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    assert response.headers["Access-Control-Allow-Origin"] == APP
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == set(cors.METHODS)
    allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key", "x-request-id"}
    assert response.headers["Access-Control-Max-Age"] == str(cors.MAX_AGE)
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert varies_on_origin(response)
    assert response.headers["X-Request-ID"]


def test_a_preflight_claims_no_idempotency_key_and_touches_no_account(app, client):
    response = client.options(
        "/api/items",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            # A browser never sends these with a preflight; a confused client might.
            "Idempotency-Key": str(uuid.uuid4()),
            "Authorization": "Bearer not-a-key",
        },
    )
    assert response.status_code == 204
    with app.extensions["api.db"].read() as conn:
        assert conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 0


def test_a_preflight_from_another_origin_gets_no_cors_headers(client):
    response = preflight(client, "/api/items", origin=OTHER)
    assert response.status_code == 204
    assert_refused(response)


def test_a_preflight_may_not_ask_for_other_headers_or_methods(client):
    response = preflight(client, "/api/items", headers="content-type, x-something-else")
    assert response.headers["Access-Control-Allow-Headers"] == "content-type"
    response = preflight(client, "/api/items/1", method="PUT")
    assert "Access-Control-Allow-Methods" not in response.headers  # the browser stops there


def test_an_options_request_that_is_not_a_preflight_is_not_answered_as_one(client):
    # Without Access-Control-Request-Method it is an ordinary request, checked as before.
    response = client.options("/api/items", headers={"Origin": APP})
    assert_error(response, 401)
    assert_allowed(response)


def test_every_method_of_the_api_can_be_preflighted(app):
    used = {method for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    assert used - {"OPTIONS"} <= set(cors.METHODS)


# --- actual requests ------------------------------------------------------------------------


def test_answers_carry_the_headers_for_an_allowed_origin(client, make_user):
    user = make_user()
    origin = {"Origin": APP}
    created = client.post("/api/items", json={"name": "n"}, headers={**user.headers, **origin})
    assert created.status_code == 201
    assert_allowed(created)
    listed = client.get("/api/items", headers={"Origin": LOCAL})
    assert listed.status_code == 200
    assert_allowed(listed, LOCAL)
    assert "Access-Control-Allow-Methods" not in listed.headers  # preflight answers only


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/api/items", {"json": {"name": "n"}}, 401),
        ("GET", "/api/items/999", {}, 404),
        ("PUT", "/api/items", {}, 405),
        ("POST", "/api/users", {"json": {"name": "n", "email": "not an email"}}, 422),
        ("POST", "/api/users", {"data": "x", "content_type": "text/plain"}, 415),
        ("GET", "/api/items?limit=1&limit=2", {}, 422),
    ],
)
def test_error_answers_carry_the_headers(client, method, path, kwargs, status):
    response = client.open(path, method=method, headers={"Origin": APP}, **kwargs)
    assert_error(response, status)
    assert_allowed(response)


def test_an_idempotency_conflict_carries_the_headers(app, client, make_user):
    user = make_user()
    headers = {**user.headers, "Idempotency-Key": str(uuid.uuid4()), "Origin": APP}
    first = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert first.status_code == 201
    replay = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert_allowed(replay)
    with app.extensions["api.db"].write() as conn:
        conn.execute(
            text(
                "UPDATE idempotency_keys SET response = NULL, claim_token = 'other', "
                "lease_until = '2999-01-01 00:00:00.000000'"
            )
        )
    busy = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert_error(busy, 409)
    assert busy.headers["Retry-After"]
    assert_allowed(busy)


def test_an_unexpected_500_carries_the_headers(settings):
    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("bug")

    try:
        response = app.test_client().get("/boom", headers={"Origin": APP})
    finally:
        app.extensions["api.db"].engine.dispose()
    assert_error(response, 500)
    assert_allowed(response)


def test_another_origin_or_none_gets_no_cors_headers_but_vary(client):
    assert_refused(client.get("/api/items", headers={"Origin": OTHER}))
    assert_refused(client.get("/api/items/999", headers={"Origin": OTHER}))
    # Not the list of allowed origins (flask-cors's always_send would put it there).
    assert_refused(client.get("/api/items"))


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com.evil.net",  # a prefix is not the origin
        "https://app.example.com:8443",
        "http://app.example.com",
        "null",
        "https://app-example.com",
    ],
)
def test_only_the_exact_origin_is_allowed(client, origin):
    assert_refused(client.get("/api/items", headers={"Origin": origin}))


def test_an_ipv6_origin_is_matched_exactly(db_path):
    # flask-cors would read '[::1]' as a regular expression (a character class).
    settings = load_settings(
        database_url=sqlite_url(db_path), cors_allowed_origins="http://[::1]:8080"
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        allowed = client.get("/healthz", headers={"Origin": "http://[::1]:8080"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "http://[::1]:8080"
        assert_refused(client.get("/healthz", headers={"Origin": "http://1:8080"}))
    finally:
        app.extensions["api.db"].engine.dispose()


def test_the_exposed_headers_include_every_header_the_api_sets_for_clients():
    assert set(cors.EXPOSE_HEADERS) >= {
        "Idempotent-Replayed",
        "X-Request-ID",
        "Retry-After",
        "Link",
        "Location",
        "WWW-Authenticate",
        "Allow",
    }
    assert set(cors.ALLOW_HEADERS) == {
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "X-Request-ID",
    }


# --- off by default -------------------------------------------------------------------------


def test_cors_is_off_by_default(monkeypatch, db_path):
    monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
    settings = load_settings(database_url=sqlite_url(db_path))
    assert settings.cors_allowed_origins == ()
    app = create_app(settings)
    try:
        client = app.test_client()
        responses = [
            preflight(client, "/api/items"),
            preflight(client, "/api/items/1", method="PATCH"),
            client.get("/api/items", headers={"Origin": APP}),
            client.get("/api/items/999", headers={"Origin": APP}),
        ]
    finally:
        app.extensions["api.db"].engine.dispose()
    assert responses[0].status_code == 401  # an OPTIONS like any other, as before
    for response in responses:
        assert cors_headers(response) == {}
        assert not varies_on_origin(response)


# --- the setting ----------------------------------------------------------------------------

GOOD = {
    APP: (APP,),
    f" {APP} , {LOCAL} ,": (APP, LOCAL),
    "HTTPS://App.Example.COM": (APP,),
    f"{APP},{APP}": (APP,),
    "https://app.example.com:8443": ("https://app.example.com:8443",),
    "http://127.0.0.1:8080": ("http://127.0.0.1:8080",),
    "http://[::1]:8080": ("http://[::1]:8080",),
}
BAD = [
    "*",
    f"{APP},*",
    "https://app.example.com/",
    "https://app.example.com/app",
    "app.example.com",
    "//app.example.com",
    "ftp://app.example.com",
    "https://app.example.com:443",
    "http://app.example.com:80",
    "https://app.example.com:0",
    "https://app.example.com:65536",
    "https://*.example.com",
    "https://app.example.com?x=1",
    "https://user@app.example.com",
    "null",
    "https://app_example.com",
    "https://-app.example.com",
]


@pytest.mark.parametrize(("value", "expected"), GOOD.items())
def test_origins_are_read_as_browsers_send_them(monkeypatch, value, expected):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", value)
    assert load_settings().cors_allowed_origins == expected


@pytest.mark.parametrize("value", BAD)
def test_a_bad_origin_stops_the_start_with_a_readable_error(monkeypatch, value):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("Invalid configuration: CORS_ALLOWED_ORIGINS: ")
    assert "\n" not in message


def test_the_wildcard_is_refused_with_a_reason(monkeypatch):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "*")
    with pytest.raises(SettingsError, match="list each origin"):
        load_settings()


# --- nginx: the same rules, the same lists ---------------------------------------------------


def nginx_entrypoint(
    value: str, tmp_path: Path, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run nginx's entrypoint up to its settings checks.

    TLS_CERT names a missing file, so a value that passes stops at the next check (the
    certificate) and nothing is rendered or started.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CORS_ALLOWED_ORIGINS": value,
        "TLS_CERT": str(tmp_path / "missing.pem"),
        **settings,
    }
    return subprocess.run(
        ["sh", str(REPO / "nginx" / "docker-entrypoint.sh"), "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("value", ["", *GOOD, *BAD])
def test_nginx_accepts_and_refuses_the_same_values(tmp_path, value):
    try:
        load_settings(cors_allowed_origins=value)
        api_accepts = True
    except SettingsError:
        api_accepts = False
    result = nginx_entrypoint(value, tmp_path)
    assert result.returncode == 64, result.stderr  # stopped by a check either way
    nginx_accepts = "missing.pem does not exist" in result.stderr
    assert nginx_accepts == api_accepts, result.stderr
    if not nginx_accepts:
        assert "CORS_ALLOWED_ORIGINS" in result.stderr


def test_nginx_refuses_a_setting_of_several_lines(tmp_path):
    """One valid line is not enough: the rest would reach nginx's configuration as written."""
    result = nginx_entrypoint("", tmp_path, SERVER_NAME="localhost\n} server { listen 9999;")
    assert result.returncode == 64
    assert "SERVER_NAME=" in result.stderr
    assert "missing.pem" not in result.stderr


def test_nginx_exposes_the_same_headers():
    template = (REPO / "nginx" / "conf.d" / "cors.conf.template").read_text()
    block = re.search(r"map \$cors_allow_origin \$cors_expose_headers \{(.*?)\}", template, re.S)
    assert block is not None
    listed = re.search(r'default\s+"([^"]+)"', block.group(1))
    assert listed is not None
    assert [h.strip() for h in listed.group(1).split(",")] == sorted(cors.EXPOSE_HEADERS)
