"""Each setting's default is defined once, in core/config.py; nothing that repeats it may disagree.

What repeats a default: services/api/.env.example (a local run), the image's ENV (where the
container needs another value than a local run: the database path, the log flush interval), the
compose files' `${VAR:-default}` (which must repeat the image's value, because an empty one
would replace the image's ENV), the repository's .env.example (compose's settings), and nginx's
entrypoint for a variable both services read (CORS_ALLOWED_ORIGINS).
"""

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from api.core.config import GunicornSettings, Settings, env_name

SERVICE = Path(__file__).resolve().parents[1]
REPO = SERVICE.parents[1]
COMPOSE_FILES = sorted(REPO.glob("compose*.yaml"))


MODELS: dict[str, tuple[type[BaseSettings], str]] = {
    env_name(model, field): (model, field)
    for model in (Settings, GunicornSettings)
    for field in model.model_fields
}


def _same_as_default(env: str, value: str) -> bool:
    """Whether ``value``, read as the model reads the variable, is the code's default."""
    model, field = MODELS[env]
    default = model.model_fields[field].default
    if value == "":
        # Empty is "not set" (env_ignore_empty): it stands for a default of nothing at all.
        return default is None or default == ()
    parsed = model.model_validate({field: value})
    return getattr(parsed, field) == default


def _image_env() -> dict[str, str]:
    """The runtime stage's ENV of services/api/Dockerfile (its last stage)."""
    runtime = (SERVICE / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    values: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", runtime, flags=re.M | re.S):
        for name, value in re.findall(r"([A-Z_]+)=(\S+)", block):
            values[name] = value
    return values


def _container_default(env: str) -> str | None:
    """What the variable is in the container when nobody sets it (None: the code's default)."""
    return _image_env().get(env)


def _env_example(path: Path) -> dict[str, str]:
    """NAME=value lines of an .env.example, commented out or not."""
    return dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.M))


def _nginx_defaults() -> dict[str, str]:
    """NAME -> default of every `: "${NAME:=default}"` line of nginx/docker-entrypoint.sh."""
    text = (REPO / "nginx" / "docker-entrypoint.sh").read_text()
    return dict(re.findall(r'^: "\$\{([A-Z][A-Z0-9_]*):=([^}]*)\}"$', text, flags=re.M))


def _compose_defaults() -> list[tuple[str, str, str]]:
    """(file, NAME, default) for every ${NAME:-default} in the compose files."""
    return [
        (path.name, name, default)
        for path in COMPOSE_FILES
        for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}", path.read_text())
    ]


def test_the_service_env_example_lists_every_setting_with_its_default():
    example = _env_example(SERVICE / ".env.example")
    assert set(MODELS) <= set(example), sorted(set(MODELS) - set(example))
    wrong = {env: value for env, value in example.items() if not _same_as_default(env, value)}
    assert wrong == {}


def test_the_image_overrides_only_settings_that_exist():
    overridden = {env for env in _image_env() if env.isupper() and env in MODELS}
    assert overridden == {"DATABASE_URL", "LOG_FLUSH_INTERVAL"}


@pytest.mark.parametrize(("file", "env", "default"), _compose_defaults())
def test_compose_defaults_agree_with_the_container(file, env, default):
    if env not in MODELS:
        return  # compose's own setting: checked against .env.example below
    image_value = _container_default(env)
    if image_value is not None:
        # An empty value would replace the image's ENV and fall back to the code's default.
        assert default == image_value, f"{file}: {env} must default to the image's {image_value}"
    else:
        assert default == "" or _same_as_default(env, default), f"{file}: {env}={default!r}"


def test_the_repository_env_example_agrees_with_compose_and_the_image():
    example = _env_example(REPO / ".env.example")
    compose = {env: default for _, env, default in _compose_defaults() if default}
    for env, value in example.items():
        if env in MODELS:
            expected = _container_default(env)
            if expected is not None:
                assert value == expected, f".env.example: {env}={value!r}, the image: {expected!r}"
            else:
                assert _same_as_default(env, value), f".env.example: {env}={value!r}"
        elif env in compose:
            assert value == compose[env], (
                f".env.example: {env}={value!r}, compose: {compose[env]!r}"
            )


def test_nginx_agrees_on_the_settings_it_shares_with_the_api():
    nginx = _nginx_defaults()
    assert "SERVER_NAME" in nginx  # the pattern still reads the entrypoint
    shared = {env: value for env, value in nginx.items() if env in MODELS}
    assert set(shared) == {"CORS_ALLOWED_ORIGINS"}
    wrong = {env: value for env, value in shared.items() if not _same_as_default(env, value)}
    assert wrong == {}
