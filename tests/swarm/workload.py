"""The load of the update and failure scenarios: reads and authenticated writes through one
node's nginx, open-loop (tests/support/openload.py), the domain from domain.py only.

Every write carries its own Idempotency-Key and a label unique to it, so a write the client saw
acknowledged (201) can be found in the database afterwards, and counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support import domain
from tests.support.openload import Call, OpenLoad
from tests.support.swarm import Endpoint

RATE = 60  # requests per second; the issue asks for at least 50
WRITE_EVERY = 3  # one request in three is a write (POST), the rest reads


@dataclass
class Workload:
    endpoint: Endpoint
    name: str  # labels this scenario's writes
    write_attempts: int = 1  # > 1: retry a failed write with the same Idempotency-Key
    user: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user = domain.create_user(self.endpoint, f"swarm {self.name}")
        self.resource = domain.create_resource(self.endpoint, self.user, f"{self.name}-read")
        self.prefix = f"{self.name}-{uuid.uuid4().hex[:8]}-"

    def plan(self, index: int) -> Call:
        headers = domain.auth(self.user)
        if index % WRITE_EVERY == 0:
            body = domain.resource_body(f"{self.prefix}{index}")
            return Call(
                "write",
                "POST",
                domain.RESOURCES_PATH,
                {"json": body, "headers": {**headers, "Idempotency-Key": uuid.uuid4().hex}},
                attempts=self.write_attempts,
            )
        if index % 2:
            return Call(
                "read", "GET", domain.resource_url(self.resource["id"]), {"headers": headers}
            )
        params = {**domain.owned_by(self.user["id"]), "limit": 5}
        return Call("read", "GET", domain.RESOURCES_PATH, {"headers": headers, "params": params})

    def load(self, *, timeout: float = 5.0) -> OpenLoad:
        return OpenLoad(
            self.endpoint.base_url, str(self.endpoint.ca), RATE, self.plan, timeout=timeout
        )

    def check_writes(self, load: OpenLoad) -> dict[str, int]:
        """Every acknowledged write is stored exactly once, and nothing else under our labels."""
        acknowledged = {
            domain.resource_label(a.body)
            for a in load.final()
            if a.kind == "write" and a.failure is None and isinstance(a.body, dict)
        }
        stored: dict[str, int] = {}
        for resource in domain.owned_resources(self.endpoint, self.user):
            label = domain.resource_label(resource)
            if label.startswith(self.prefix):
                stored[label] = stored.get(label, 0) + 1
        missing = acknowledged - stored.keys()
        twice = {label: n for label, n in stored.items() if n > 1}
        assert not missing, f"{len(missing)} acknowledged writes not stored: {sorted(missing)[:10]}"
        assert not twice, f"writes stored more than once: {twice}"
        return {"acknowledged_writes": len(acknowledged), "stored_writes": len(stored)}
