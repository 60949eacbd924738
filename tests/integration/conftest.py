"""The integration suite: the shared fixtures and hooks (tests/support/fixtures.py, where each
one is documented) and nothing else of its own."""

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
