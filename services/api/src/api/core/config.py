"""Settings, read once from the environment (see ``.env.example`` for every variable)."""

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# The dialect/driver pairs the code is written and tested for; anything else is a typo or an
# untested driver, and failing at start-up beats failing on the first request.
SUPPORTED_DATABASES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")

# An origin as a browser sends it in the Origin header (RFC 6454 serialisation): scheme, host and
# port, lower case, no path, and no port when it is the scheme's default. Anything else could never
# match, so it is refused at start rather than silently ignored. nginx/docker-entrypoint.sh checks
# CORS_ALLOWED_ORIGINS with the same rules (a unit test holds the two to each other).
_ORIGIN = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def check_origin(value: str) -> str:
    """``value`` as the browser would send it (lower case), or ValueError saying what is wrong."""
    origin = value.strip().lower()
    if origin == "*":
        raise ValueError(
            "'*' is not accepted (every website could then call the API from its visitors' "
            "browsers): list each origin, e.g. https://app.example.com (docs/security.md, CORS)"
        )
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        raise ValueError(
            f"{value!r} is not an origin: write scheme://host[:port], e.g. "
            "https://app.example.com, with no path and no trailing slash"
        )
    scheme, host, port = match["scheme"], match["host"], match["port"]
    if port is not None and int(port) > 65535:
        raise ValueError(f"{value!r}: {port} is not a port number")
    if port == _DEFAULT_PORTS[scheme]:
        raise ValueError(
            f"{value!r}: browsers send {scheme}://{host} without its default port; write that"
        )
    return origin


class SettingsError(Exception):
    """Raised when the environment holds an invalid setting; the message is meant for operators."""


class Settings(BaseSettings):
    # No env_file here: the image and CI pass real environment variables, and `flask run` already
    # loads a local .env through python-dotenv.
    # env_ignore_empty: compose passes unset `${VAR:-}` values through as empty strings.
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True
    )

    database_url: str = "sqlite:///var/api.sqlite3"
    # A file holding the database password (a Docker secret), so that no secret has to be an
    # environment variable; it fills in the password of DATABASE_URL.
    database_password_file: Path | None = None
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # PostgreSQL connections per worker process: one per gunicorn thread is enough (a request
    # holds one at a time); the database's max_connections is sized from this (postgres/).
    database_pool_size: int = Field(default=5, ge=1, le=100)
    database_pool_max_overflow: int = Field(default=0, ge=0, le=100)
    # Seconds a request waits for a free pooled connection before a 503.
    database_pool_timeout: float = Field(default=5, gt=0, le=60)
    database_connect_timeout: int = Field(default=5, ge=1, le=60)
    # Below gunicorn's worker timeout (30 s), so a stuck query is a 503 rather than a killed worker.
    database_statement_timeout_ms: int = Field(default=15_000, ge=0, le=3_600_000)
    # Run `python -m api.migrate` when the container starts (one host). A deployment with several
    # replicas turns it off and runs the migration once per deploy, as a job.
    migrate_on_start: bool = True
    # How long `python -m api.migrate` waits for the database to accept connections (a database
    # container that starts at the same time, or Swarm, which ignores depends_on). 0 = not at all.
    database_wait_seconds: int = Field(default=60, ge=0, le=3600)
    # Idempotency-Key records: kept this long, and an in-flight claim is honoured this long
    # (no longer than gunicorn's timeout, after which the worker that held it is dead).
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    idempotency_lease_seconds: int = Field(default=30, ge=1, le=600)
    # Number of trusted proxies in front of the app for each X-Forwarded-* header (0 = ignore it).
    proxy_fix_x_for: int = Field(default=1, ge=0, le=10)
    proxy_fix_x_proto: int = Field(default=1, ge=0, le=10)
    proxy_fix_x_host: int = Field(default=1, ge=0, le=10)
    proxy_fix_x_port: int = Field(default=1, ge=0, le=10)
    log_level: LogLevel = "INFO"
    # Seconds between batched writes of INFO log lines (0 = each line at once; WARNING and above
    # are always written at once). The image sets 1 (docs/performance.md).
    log_flush_interval: float = Field(default=0.0, ge=0, le=60)
    max_content_length: int = Field(default=1024 * 1024, ge=1)
    # Browser origins allowed to call the API across origins (CORS, web/cors.py), comma-separated
    # exact origins such as https://app.example.com. Empty (the default): CORS is off and no
    # response carries a CORS header. nginx reads the same variable for its own error answers.
    cors_allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Prometheus metrics (api/web/metrics.py, docs/operations.md): recorded by the workers and
    # served by gunicorn's master at :METRICS_PORT/metrics, plain HTTP, which nginx never proxies.
    metrics_enabled: bool = True
    metrics_port: int = Field(default=9100, ge=1, le=65535)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # From the environment: "https://a.example.com, https://b.example.com"; blanks ignored.
        if isinstance(value, str):
            return tuple(part for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(check_origin(origin) for origin in value))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError("not a valid SQLAlchemy URL") from exc
        if url.drivername not in SUPPORTED_DATABASES:
            supported = ", ".join(SUPPORTED_DATABASES)
            raise ValueError(f"unsupported driver {url.drivername!r}; use one of {supported}")
        return value

    _engine_url: URL = PrivateAttr()

    @model_validator(mode="after")
    def _read_password_file(self) -> Self:
        url = make_url(self.database_url)
        if self.database_password_file is not None:
            try:
                password = self.database_password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ValueError(
                    f"DATABASE_PASSWORD_FILE cannot be read ({exc.strerror})"
                ) from None
            if not password:
                raise ValueError("DATABASE_PASSWORD_FILE is empty")
            url = url.set(password=password)
        self._engine_url = url
        return self

    @property
    def engine_url(self) -> URL:
        """DATABASE_URL with the password from DATABASE_PASSWORD_FILE, if one is given."""
        return self._engine_url


class GunicornSettings(BaseSettings):
    """gunicorn's settings (gunicorn.conf.py): ``GUNICORN_*`` and ``FORWARDED_ALLOW_IPS``."""

    model_config = SettingsConfigDict(
        env_prefix="GUNICORN_",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        populate_by_name=True,
    )

    bind: str = "0.0.0.0:8000"
    # None: one per CPU, at least two (gunicorn.conf.py says why).
    workers: int | None = Field(default=None, ge=1)
    worker_class: Literal["gthread", "sync"] = "gthread"
    threads: int = Field(default=4, ge=1)
    timeout: int = Field(default=30, ge=1)
    graceful_timeout: int = Field(default=30, ge=1)
    keepalive: int = Field(default=75, ge=0)
    max_requests: int = Field(default=0, ge=0)
    max_requests_jitter: int = Field(default=1000, ge=0)
    # Restart the workers when a loaded source file changes: development only (compose.dev.yaml).
    reload: bool = False
    # Seconds the container keeps serving after its stop signal before gunicorn is told to stop
    # (docker-entrypoint.sh, which reads it: a proxy must first stop sending it requests).
    shutdown_drain_seconds: int = Field(default=0, ge=0, validation_alias="SHUTDOWN_DRAIN_SECONDS")
    # gunicorn's own variable name, without the prefix.
    forwarded_allow_ips: str = Field(default="*", validation_alias="FORWARDED_ALLOW_IPS")


def env_name(model: type[BaseSettings], field_name: str) -> str:
    """The environment variable a settings field is read from (what users set, not the field)."""
    field = model.model_fields.get(field_name)
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias
    return (str(model.model_config.get("env_prefix", "")) + field_name).upper()


S = TypeVar("S", bound=BaseSettings)


def _load(model: type[S], overrides: dict[str, Any]) -> S:
    try:
        return model(**overrides)
    except ValidationError as exc:
        # The offending value is left out on purpose: DATABASE_URL may carry a password. Checks
        # across fields (the password file) have no location; their message names the variable.
        problems = "; ".join(
            f"{env_name(model, str(err['loc'][0]))}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise SettingsError(
            f"Invalid configuration: {problems}. Fix the environment variable(s) named above "
            "(see services/api/.env.example) and start again."
        ) from None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus explicit overrides) or raise ``SettingsError``.

    The error text is one paragraph naming each bad variable, so a misconfigured container says
    what to fix instead of printing a pydantic traceback.
    """
    return _load(Settings, overrides)


def load_gunicorn_settings(**overrides: object) -> GunicornSettings:
    """gunicorn's settings from the environment, with the same errors as ``load_settings``."""
    return _load(GunicornSettings, overrides)
