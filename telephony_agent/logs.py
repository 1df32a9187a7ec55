"""Structured logging with call context and secret redaction.

Why a processor and not care: a key pasted into an f-string by a future change must
still not reach the log. Every registered secret value is replaced wherever it
appears (event text, values, nested structures, exception text), and keys whose
name says "secret" are masked regardless of value.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

MASK = "***"
_SENSITIVE_KEY = re.compile(r"(api[_-]?key|authorization|password|passwd|secret|token)", re.I)
# Values that look like credentials even when nobody registered them.
_CREDENTIAL_PATTERNS = re.compile(
    r"(?i)\b(bearer|api-key)\s+[A-Za-z0-9._~+/=-]{6,}|\bsk-[A-Za-z0-9_-]{8,}"
)

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked everywhere from now on."""
    global _secret_pattern
    if not value or len(value) < 4:
        return
    with _lock:
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact_text(text: str) -> str:
    """Mask registered secrets and credential-looking tokens in a string."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _CREDENTIAL_PATTERNS.sub(
        lambda m: (m.group(1) + " " + MASK) if m.group(1) else MASK, text
    )


def _redact_value(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        return {
            k: (
                MASK
                if isinstance(k, str) and _SENSITIVE_KEY.search(k) and v
                else _redact_value(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: runs last before rendering, after exceptions are formatted."""
    for key in list(event_dict):
        value = event_dict[key]
        if _SENSITIVE_KEY.search(key) and value:
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


class _RedactingFilter(logging.Filter):
    """Applies the same masking to records of third-party libraries (websockets, aiortc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a library's broken format string must not kill logging
            return True
        record.msg = redact_text(message)
        record.args = None
        return True


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "console", "json"] = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Set up structlog and stdlib logging once per process (idempotent)."""
    for value in secrets:
        register_secret(value)
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_telephony_agent", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(out)
    handler.addFilter(_RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._telephony_agent = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Third-party libraries are chatty at debug and may print headers there.
    root.setLevel(max(numeric, logging.WARNING))


def bind_call(call_id: str) -> None:
    """Bind the call id to every log line of the current task (and tasks it creates)."""
    structlog.contextvars.bind_contextvars(call_id=call_id)
