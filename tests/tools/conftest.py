"""Logging for tool tests: every level captured, and the process set-up restored after."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
import structlog
from structlog.testing import LogCapture


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every event logged during the test (debug included), as structlog event dicts."""
    config = structlog.get_config()
    capture = LogCapture()
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield cast(list[dict[str, Any]], capture.entries)
    finally:
        structlog.configure(**config)
