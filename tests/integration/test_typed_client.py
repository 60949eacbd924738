"""`make client`: a typed client generated from the OpenAPI document works against the stack."""

from __future__ import annotations

import importlib
import ssl
import subprocess
import sys

from tests.support.containers import REPO
from tests.support.domain import CLIENT, OWNER_FIELD, resource_body, user_body


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
        models = importlib.import_module("flask_stack_client.models")
        create_user = importlib.import_module("flask_stack_client.api.users.create_user")
        # The resource's operations and models are named after it (domain.CLIENT).
        operations = f"flask_stack_client.api.{CLIENT.module}"
        create = importlib.import_module(f"{operations}.{CLIENT.create}")
        get = importlib.import_module(f"{operations}.{CLIENT.get}")
        create_model, model = getattr(models, CLIENT.create_model), getattr(models, CLIENT.model)

        tls = ssl.create_default_context(cafile=str(stack.ca))
        anonymous = client_pkg.Client(stack.base_url, verify_ssl=tls)
        email = f"typed-{tmp_path.name}@example.com"
        created = create_user.sync(
            client=anonymous, body=models.UserCreate.from_dict(user_body("Typed Client", email))
        )
        assert isinstance(created, models.UserCreated), created

        owner = client_pkg.AuthenticatedClient(
            stack.base_url, token=created.api_key, verify_ssl=tls
        )
        sent = resource_body("typed")
        resource = create.sync(client=owner, body=create_model.from_dict(sent))
        assert isinstance(resource, model), resource
        read = get.sync(client=owner, **{CLIENT.id_param: resource.id})
        assert isinstance(read, model)
        fields = read.to_dict()
        assert read.id == resource.id
        assert {field: fields[field] for field in sent} == sent
        assert fields[OWNER_FIELD] == created.id

        forbidden = get.sync_detailed(client=anonymous, **{CLIENT.id_param: resource.id})
        assert forbidden.status_code == 403
        assert isinstance(forbidden.parsed, models.ErrorBody)
        missing = get.sync(client=owner, **{CLIENT.id_param: 999_999_999})
        assert isinstance(missing, models.ErrorBody)
        assert missing.status == 404
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("flask_stack_client")]:
            del sys.modules[name]
