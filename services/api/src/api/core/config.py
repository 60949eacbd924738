"""Settings, read once from the environment (see ``.env.example`` for every variable)."""

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# The dialect/driver pairs the code is written and tested for; anything else is a typo or an
# untested driver, and failing at start-up beats failing on the first request.
SUPPORTED_DATABASES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


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
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

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


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus explicit overrides) or raise ``SettingsError``.

    The error text is one paragraph naming each bad variable, so a misconfigured container says
    what to fix instead of printing a pydantic traceback.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            # The offending value is left out on purpose: DATABASE_URL may carry a password.
            f"{'.'.join(str(part) for part in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(
            f"Invalid configuration: {problems}. Fix the environment variable(s) named above "
            "(see services/api/.env.example) and start again."
        ) from None
