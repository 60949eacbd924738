"""Application factory."""

from importlib.metadata import version

from flask_openapi3 import Info
from werkzeug.middleware.proxy_fix import ProxyFix

from api import auth, idempotency
from api.core.config import Settings, load_settings
from api.core.db import Database, build_engine
from api.core.logging import configure_logging
from api.routes import RESOURCES, health
from api.web import cors, errors, json_body, metrics, openapi, query_args, request_log
from api.web.application import ApiApp
from api.web.models import ValidationErrorBody

# One version for the package, the images (Makefile) and the OpenAPI document: pyproject.toml.
API_VERSION = version("api")


def create_app(settings: Settings | None = None) -> ApiApp:
    """Build a configured app; settings come from the environment unless given.

    Raises ``SettingsError`` (with an operator-friendly message) on a bad environment.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_flush_interval)

    app = ApiApp(
        __name__,
        info=Info(title="Users and Items API", version=API_VERSION),
        security_schemes=auth.BEARER_SCHEME,
        validation_error_status=422,
        validation_error_model=ValidationErrorBody,
        validation_error_callback=errors.validation_error_response,
        # The library's UI pages live at their own paths; ours (openapi.docs) serves exactly
        # /api/openapi.json and /api/docs.
        doc_ui=False,
        static_folder=None,
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions["api.db"] = Database(build_engine(settings))
    # Flask's documented way to add WSGI middleware, which mypy sees as replacing a method.
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app,
        x_for=settings.proxy_fix_x_for,
        x_proto=settings.proxy_fix_x_proto,
        x_host=settings.proxy_fix_x_host,
        x_port=settings.proxy_fix_x_port,
    )

    # Hook order matters: request id first (everything logs it), then CORS, whose preflight
    # answer must come before every check below (a preflight has no credentials and no body),
    # then the replay of a retried POST by the API key it was sent with (which it may itself
    # have revoked), then auth (401 before any body error), then repeated query parameters, then
    # the JSON body checks, and last the Idempotency-Key claim, which needs the user and the
    # parsed body.
    request_log.init_request_log(app)
    cors.init_cors(app, settings)
    idempotency.init_replay_for_credential(app)
    auth.init_auth(app)
    query_args.init_query_args(app)
    json_body.init_json_body(app)
    idempotency.init_idempotency(app, settings)
    errors.register_error_handlers(app)

    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.docs, url_prefix="/api")
    for resource in RESOURCES:
        app.register_api(resource)
    openapi.document_idempotency(app.api_doc)
    # Last: it learns the methods of the rules above, and its middleware wraps everything.
    metrics.init_metrics(app, settings)
    return app
