"""The OpenAPI document and the offline docs page."""

import re

import pytest

from api.auth import view_auth_policy

METHODS = {"get", "post", "patch", "put", "delete"}


@pytest.fixture
def spec(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_document_basics(spec):
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert {path for path, _, _ in operations(spec)} == {
        "/api/users",
        "/api/users/me",
        "/api/users/me/api-key",
        "/api/users/{user_id}",
        "/api/items",
        "/api/items/{item_id}",
    }


def test_every_operation_documents_its_errors(spec):
    for path, method, op in operations(spec):
        codes = set(op["responses"])
        assert {"414", "422", "429", "431", "500", "503"} <= codes, (path, method)
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                expected = "ValidationErrorBody" if code == "422" else "ErrorBody"
                assert ref.endswith(f"/{expected}"), (path, method, code)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= codes, (path, method)
        if "{" in path:
            assert "404" in codes, (path, method)


def test_security_matches_enforcement(app, spec):
    """The documented security of each operation is what the auth hook enforces."""
    by_route = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            by_route[(path, method.lower())] = rule.endpoint
    for path, method, op in operations(spec):
        with app.test_request_context():
            policy = view_auth_policy(by_route[(path, method)])
        security = op.get("security")
        if policy == "required":
            assert security == [{"bearerAuth": []}], (path, method)
            assert "401" in op["responses"]
        elif policy == "optional":
            assert security == [{}, {"bearerAuth": []}], (path, method)
            assert "401" in op["responses"]
        else:
            assert security is None, (path, method)


def test_docs_page_is_served_offline(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html
    assert "https://" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 5
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.data) > 50
    assert 'data-spec-url="/api/openapi.json"' in html


@pytest.mark.parametrize("path", ["/openapi", "/openapi/openapi.json", "/openapi/swagger", "/api/"])
def test_library_doc_uis_are_not_exposed(client, path):
    assert client.get(path).status_code == 404


def test_operation_ids_are_the_view_names(client):
    """The ids a generated client names its functions by: a change here breaks clients."""
    spec = client.get("/api/openapi.json").get_json()
    ids = {
        (method.upper(), path): operation["operationId"]
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    assert ids == {
        ("GET", "/api/users"): "list_users",
        ("POST", "/api/users"): "create_user",
        ("GET", "/api/users/me"): "get_me",
        ("PATCH", "/api/users/me"): "update_me",
        ("DELETE", "/api/users/me"): "delete_me",
        ("POST", "/api/users/me/api-key"): "rotate_api_key",
        ("GET", "/api/users/{user_id}"): "get_user",
        ("GET", "/api/items"): "list_items",
        ("POST", "/api/items"): "create_item",
        ("GET", "/api/items/{item_id}"): "get_item",
        ("PATCH", "/api/items/{item_id}"): "update_item",
        ("DELETE", "/api/items/{item_id}"): "delete_item",
    }
