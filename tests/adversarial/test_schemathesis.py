"""Schemathesis: property-based fuzzing of every operation in /api/openapi.json, through nginx.

`st run` (the CLI, so the run is exactly what a developer reproduces by hand) is aimed at
https://localhost:<port>/api/openapi.json of the shared stack (rate limits off), verifying the
server against the run's CA. Phases: coverage (boundary values, every documented status),
fuzzing (random valid and invalid inputs) and stateful (sequences that follow the API's links:
create a user, then read, change and delete it, ...). Operations that need a key are sent with a
real one (schemathesis_hooks.py).

Checks: every check schemathesis has (`all`), among them not_a_server_error,
status_code_conformance, content_type_conformance, response_schema_conformance,
response_headers_conformance, negative_data_rejection, ignored_auth, use_after_free,
ensure_resource_availability -- except one:

- positive_data_acceptance expects every schema-valid request to be accepted. Two rules cannot be
  said in JSON Schema, so schema-valid input is rightly refused with 422: pagination cursors are
  opaque tokens the API issues (`cursor=0` matches the pattern but was never issued), and email
  addresses are checked by email-validator (`x@y.test` is a valid `format: email` but uses a
  special-use domain, RFC 6761). Checking it would only re-find these two by design.

Target: at least 1,000 generated cases, zero failures, every operation tested, and every
authenticated operation accepted at least once (so the key really worked).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.http import get_json

MIN_CASES = 1000
MAX_EXAMPLES = 100  # per operation and phase; 12 operations give well over MIN_CASES
CHECKS_EXCLUDED = "positive_data_acceptance"  # see the module docstring
CONFIG = Path(__file__).with_name("schemathesis.toml")  # 414/431 count as refusals
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def authenticated_operations(document: dict) -> set[str]:
    """'METHOD /path' of every operation whose security requires the bearer key (no {} option)."""
    required = set()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            security = operation.get("security", document.get("security", []))
            if security and all(requirement for requirement in security):
                required.add(f"{method.upper()} {path}")
    return required


@pytest.mark.timeout(300, func_only=True)
def test_schemathesis_finds_nothing(stack, tmp_path, figures):
    schema_url = stack.url("/api/openapi.json")
    document = get_json(stack, "/api/openapi.json")
    needs_key = authenticated_operations(document)
    assert needs_key, "the document declares no authenticated operation"

    seed = int(os.environ.get("ADV_SCHEMATHESIS_SEED") or random.randrange(2**31))
    report = tmp_path / "schemathesis.json"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.adversarial.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "ADV_BASE_URL": stack.base_url,
        "ADV_CA": str(stack.ca),
        # Only the run's CA is trusted, and nothing may sit between the fuzzer and 127.0.0.1.
        "REQUESTS_CA_BUNDLE": str(stack.ca),
        "CURL_CA_BUNDLE": str(stack.ca),
        "SSL_CERT_FILE": str(stack.ca),
        "NO_PROXY": "*",
        "no_proxy": "*",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        schema_url,
        "--checks",
        "all",
        "--exclude-checks",
        CHECKS_EXCLUDED,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "2",
        "--seed",
        str(seed),
        "--tls-verify",
        str(stack.ca),
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    completed = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=280, check=False
    )
    output = completed.stdout + completed.stderr
    # All of it (shown only on failure): a failing case's description can precede kilobytes of
    # generated URL.
    print(output)
    assert report.is_file(), (
        f"schemathesis wrote no report (exit {completed.returncode}):\n{output}"
    )
    result = json.loads(report.read_text())

    cases = result["test_cases"]
    operations = result["operations"]
    accepted = {
        operation: sum(phase.get("accepted", 0) for phase in phases.values())
        for operation, phases in result["valid_rates"].items()
    }
    figures["schemathesis"] = {
        "seed": seed,
        "cases": cases["generated"],
        "failures": cases["with_failures"],
        "unique_failures": cases["unique_failures"],
        "errored": cases["errored"],
        "operations_tested": operations["tested"],
        "operations_total": operations["total"],
        "seconds": round(result["running_time"], 1),
    }
    reproduce = f"(reproduce: ADV_SCHEMATHESIS_SEED={seed})\n{output[-6000:]}"
    assert completed.returncode == 0, f"schemathesis failed {reproduce}"
    assert result["complete"], reproduce
    assert result["stop_reason"] == "completed", reproduce
    assert cases["with_failures"] == 0, reproduce
    assert not result["failures"], reproduce
    assert cases["errored"] == 0, reproduce
    assert not result["errors"], reproduce
    assert cases["generated"] >= MIN_CASES, f"only {cases['generated']} cases {reproduce}"
    assert operations["tested"] == operations["total"] == len(accepted) >= 12, operations
    assert not result["warnings"]["missing_auth"], result["warnings"]["missing_auth"]
    never_accepted = sorted(op for op in needs_key if not accepted.get(op))
    assert not never_accepted, f"authenticated operations never accepted: {never_accepted}"
