"""Users and items REST API.

The package root re-exports the application factory so callers (WSGI entry, tests, tools) can write
``from api import create_app`` without knowing the module layout.
"""

from api.app import create_app

__all__ = ["create_app"]
