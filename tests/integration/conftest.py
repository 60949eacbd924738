"""The integration suite: the shared fixtures and hooks (tests/support/fixtures.py, where each
one is documented), and the figures its drills measure (printed at the end; INTEGRATION_FIGURES=path
also writes them as JSON)."""

from typing import Any

from tests.support.figures import figures, print_figures  # noqa: F401  (fixture re-exported)
from tests.support.fixtures import (  # noqa: F401  (fixtures and hooks, re-exported)
    db_password,
    docker_client,
    images,
    launcher,
    network,
    postgres_stack,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    sqlite_stack,
    stack,
    tls,
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_figures(terminalreporter, "integration figures", "INTEGRATION_FIGURES")
