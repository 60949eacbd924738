"""OpenAPI plumbing: documented error responses per operation, and the offline docs page."""

from pathlib import Path
from typing import Any, cast

import flask_openapi3_swagger
from flask import Blueprint, Response, current_app, jsonify, render_template_string
from flask_openapi3 import APIBlueprint, OpenAPI, Tag
from flask_openapi3.types import ResponseDict

from api.web.models import ErrorBody, ValidationErrorBody

# Errors any operation can answer: 414 and 431 when the request line or headers are too long
# (from nginx, or from gunicorn for what nginx passes on), 429 from the rate limit in front of
# the app, 500 for bugs, 503 when the database is unavailable.
_ALWAYS = (414, 429, 431, 500, 503)


def errors(*statuses: int) -> ResponseDict:
    """Response map for the error statuses an operation can return, in the error schema.

    422 is always listed: path and query parameters are validated on every operation, and
    flask-openapi3 would otherwise invent a 422 schema that does not match ours.
    """
    codes = sorted({*statuses, 422, *_ALWAYS})
    return {code: ValidationErrorBody if code == 422 else ErrorBody for code in codes}


BODY_ERRORS = (400, 413, 415)


def _operation_id(name: str, path: str, method: str) -> str:
    # The view function's name: stable and readable, and the name a client generator gives the
    # call. flask-openapi3 would derive one from the rule (``items_get_item__int_item_id__get``).
    return name


def resource_blueprint(name: str, import_name: str) -> APIBlueprint:
    """The Blueprint of one resource: ``/api/<name>``, tagged ``name`` in the document.

    Each operation's id is its view's name (``list_items``, ``create_user``, ...), so view names
    must be unique across resources.
    """
    return APIBlueprint(
        name,
        import_name,
        url_prefix=f"/api/{name}",
        abp_tags=[Tag(name=name)],
        operation_id_callback=_operation_id,
    )


# api/idempotency.py applies to every POST; this is how the document says so.
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first request with a key runs, and a retry with the same key and "
        "the same request gets its answer (marked Idempotent-Replayed) for 24 hours; 2xx and 4xx "
        "answers are kept, 5xx are not. The same key with another request is a 422, a retry "
        "while the first still runs a 409. Keys belong to the authenticated user (to nobody on "
        "sign-up); use a fresh UUID per operation."
    ),
    "schema": {
        "type": "string",
        "minLength": 16,
        "maxLength": 255,
        "pattern": r"^[ -!#-+\--\[\]-~]+$",
    },
}
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def document_idempotency(doc: dict[str, Any]) -> None:
    """Add the Idempotency-Key header and the replay marker to every POST of ``doc``."""
    for path_item in doc["paths"].values():
        operation = path_item.get("post")
        if operation is None:
            continue
        operation.setdefault("parameters", []).append(_IDEMPOTENCY_KEY)
        for status, response in operation["responses"].items():
            if status.startswith(("2", "4")):
                response.setdefault("headers", {}).update(_REPLAYED)


_SWAGGER_STATIC = Path(flask_openapi3_swagger.__file__).parent / "templates" / "swagger"

# Swagger UI from the flask-openapi3-swagger wheel: no CDN, works without internet.
docs = Blueprint("docs", __name__, static_folder=_SWAGGER_STATIC, static_url_path="/docs/static")

_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{ title }} - API docs</title>
  <link rel="icon" href="{{ url_for('docs.static', filename='images/swagger.svg') }}">
  <link rel="stylesheet" href="{{ url_for('docs.static', filename='css/swagger-ui.css') }}">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{{ url_for('docs.spec') }}"></div>
  {% for js in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js") %}
  <script src="{{ url_for('docs.static', filename='js/' + js) }}"></script>
  {% endfor %}
  <script src="{{ url_for('docs.init_js') }}"></script>
</body>
</html>
"""

# Kept out of the HTML so that a strict Content-Security-Policy (no inline scripts) still works.
_INIT_JS = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
});
"""


@docs.get("/openapi.json")
def spec() -> Any:
    # flask-openapi3 builds the document once from the registered models and caches it.
    return jsonify(cast(OpenAPI, current_app).api_doc)


@docs.get("/docs")
def docs_page() -> str:
    title = cast(OpenAPI, current_app).api_doc["info"]["title"]
    return render_template_string(_DOCS_PAGE, title=title)


@docs.get("/docs/init.js")
def init_js() -> Response:
    return Response(_INIT_JS, mimetype="text/javascript")
