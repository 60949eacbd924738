"""`make client`: a typed client generated from the OpenAPI document works against the stack."""

from __future__ import annotations

import importlib
import ssl
import subprocess
import sys

from tests.support.containers import REPO


def test_the_generated_client_signs_up_creates_and_reads_with_typed_errors(stack, tmp_path):
    done = subprocess.run(
        [sys.executable, "scripts/client.py", "--output", str(tmp_path / "flask_stack_client")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        client_pkg = importlib.import_module("flask_stack_client")
        users = importlib.import_module("flask_stack_client.api.users")
        items = importlib.import_module("flask_stack_client.api.items")
        models = importlib.import_module("flask_stack_client.models")
        importlib.import_module("flask_stack_client.api.users.create_user")
        for name in ("create_item", "get_item"):
            importlib.import_module(f"flask_stack_client.api.items.{name}")

        tls = ssl.create_default_context(cafile=str(stack.ca))
        anonymous = client_pkg.Client(stack.base_url, verify_ssl=tls)
        created = users.create_user.sync(
            client=anonymous,
            body=models.UserCreate(name="Typed Client", email=f"typed-{tmp_path.name}@example.com"),
        )
        assert isinstance(created, models.UserCreated), created

        owner = client_pkg.AuthenticatedClient(
            stack.base_url, token=created.api_key, verify_ssl=tls
        )
        item = items.create_item.sync(
            client=owner, body=models.ItemCreate(name="typed", is_public=False)
        )
        assert isinstance(item, models.Item), item
        read = items.get_item.sync(client=owner, item_id=item.id)
        assert isinstance(read, models.Item)
        assert (read.id, read.name, read.owner_id) == (item.id, "typed", created.id)

        forbidden = items.get_item.sync_detailed(client=anonymous, item_id=item.id)
        assert forbidden.status_code == 403
        assert isinstance(forbidden.parsed, models.ErrorBody)
        missing = items.get_item.sync(client=owner, item_id=999_999_999)
        assert isinstance(missing, models.ErrorBody)
        assert missing.status == 404
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("flask_stack_client")]:
            del sys.modules[name]
