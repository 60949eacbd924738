"""Generate a typed Python client from the API's OpenAPI document: `make client`.

    .venv/bin/python scripts/client.py [--output clients/python/flask_stack_client]

The document is built in process (the app factory, no server, no database needed), so the client
always matches this checkout. openapi-python-client (pinned in requirements-dev.txt) writes one
module per operation, named by its operationId (`api/users/get_user.py`, ...), and attrs models
for the schemas; the client needs httpx and attrs at run time.

    import ssl
    from flask_stack_client import AuthenticatedClient
    from flask_stack_client.api.users import get_user
    tls = ssl.create_default_context(cafile="certs/ca.pem")
    client = AuthenticatedClient("https://localhost:8443", token=API_KEY, verify_ssl=tls)
    user = get_user.sync(client=client, user_id=1)   # UserPublic, or ErrorBody for a 404
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "clients" / "python" / "flask_stack_client"


def openapi_document() -> dict:
    from api import create_app
    from api.core.config import load_settings

    app = create_app(load_settings(database_url="sqlite:///:memory:", log_level="WARNING"))
    return app.api_doc  # type: ignore[attr-defined]


def generate(output: Path) -> Path:
    """Write the client package to ``output`` (replacing it); return its path."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "openapi.json"
        spec.write_text(json.dumps(openapi_document()))
        done = subprocess.run(
            [
                bin_dir / "openapi-python-client",
                "generate",
                "--path",
                spec,
                "--meta",
                "none",
                "--output-path",
                output,
                "--overwrite",
            ],
            # The generator formats its output with ruff, which it looks up on PATH.
            env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0 or "Warning" in done.stdout + done.stderr:
        raise SystemExit(f"openapi-python-client failed:\n{done.stdout}{done.stderr}")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    print(f"wrote {generate(args.output)}")


if __name__ == "__main__":
    main()
