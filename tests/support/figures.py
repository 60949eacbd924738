"""Figures a suite measured, printed at the end of the run (and written as JSON on request).

A suite's conftest.py imports ``figures`` (a session fixture: a dict each test records its
measurements in, keyed by what it measured) and calls ``print_figures`` from its
``pytest_terminal_summary`` hook.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    """A dict each test records its measurements in (key: what it measured)."""
    return _FIGURES


def print_figures(terminalreporter: Any, title: str, env: str) -> None:
    """Print the session's figures under ``title``; write them as JSON to ``$env`` if set."""
    if not _FIGURES:
        return
    terminalreporter.section(title)
    for name, values in _FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values, sort_keys=True, default=str)}")
    target = os.environ.get(env)
    if target:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, sort_keys=True, default=str) + "\n")
        terminalreporter.write_line(f"figures written to {target}")
