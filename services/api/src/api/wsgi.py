"""WSGI entry point: ``gunicorn api.wsgi:app`` or ``flask --app api.wsgi run``."""

import sys

from api.app import create_app
from api.core.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # One clear paragraph instead of a traceback; exit code 1 stops the process manager.
    sys.exit(str(exc))
