"""Structured logging with call context, per-module levels and secret redaction.

Why a processor and not care: a key pasted into an f-string by a future change must
still not reach the log. Every registered secret value is replaced wherever it
appears (event text, values, nested structures, exception text), and keys whose
name says "secret" are masked regardless of value.

Why per-module levels: an operator chasing one SIP peer wants `telephony_agent.sip`
at debug without drowning in media and records lines. Each line carries the module
that wrote it (`logger`), which is also the name `[log] levels` matches on (the
longest matching prefix wins).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
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


class _NamedPrintLogger(structlog.PrintLogger):
    """A print logger that knows the module it was made for (`get_logger(__name__)`),
    and writes each line in one piece.

    Why one write: `print` writes the message and its newline separately, and an
    unbuffered stream (`PYTHONUNBUFFERED`, or `serve --workers K`, whose workers share
    the parent's stream) passes each on as its own system call; two processes logging
    at the same moment then interleave into a line that is not JSON. A single write of
    a line shorter than the pipe's atomic size never interleaves.
    """

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name

    def msg(self, message: str) -> None:
        with self._lock:
            self._file.write(message + "\n")
            self._file.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args and args[0] else "")


def _add_logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", "")
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


class _ModuleLevels:
    """structlog processor: drops a line below its module's level (longest prefix wins)."""

    def __init__(self, default: int, levels: Mapping[str, int]) -> None:
        self._default = default
        # Longest names first, so "telephony_agent.sip.endpoint" beats "telephony_agent".
        self._levels = sorted(levels.items(), key=lambda item: len(item[0]), reverse=True)

    def level_for(self, name: str) -> int:
        for prefix, level in self._levels:
            if name == prefix or name.startswith(prefix + "."):
                return level
        return self._default

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        numeric = _METHOD_LEVELS.get(method, logging.INFO)
        if numeric < self.level_for(getattr(logger, "name", "")):
            raise structlog.DropEvent
        return event_dict


_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "console", "json"] = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
    levels: Mapping[str, str] | None = None,
) -> None:
    """Set up structlog and stdlib logging once per process (idempotent).

    `levels` maps module (logger) names to their own level; the rest use `level`.
    """
    for value in secrets:
        register_secret(value)
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    names = logging.getLevelNamesMapping()
    numeric = names[level.upper()]
    per_module = {name: names[value.upper()] for name, value in (levels or {}).items()}
    module_levels = _ModuleLevels(numeric, per_module)
    # The bound logger drops cheaply below the lowest level anyone asked for; the
    # processor then applies each module's own level.
    lowest = min([numeric, *per_module.values()])
    structlog.configure(
        processors=[
            module_levels,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lowest),
        logger_factory=_NamedPrintLoggerFactory(out),
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
    # Third-party libraries are chatty at debug and may print headers there; a library
    # named in `levels` gets exactly the level asked for.
    root.setLevel(max(numeric, logging.WARNING))
    for module, module_level in per_module.items():
        if not module.startswith("telephony_agent"):
            logging.getLogger(module).setLevel(module_level)


def bind_call(call_id: str, *, sip_call_id: str | None = None, profile: str | None = None) -> None:
    """Bind the call's ids (ours, and the SIP Call-ID for SIP calls) and its profile to
    every log line of the current task and the tasks it creates."""
    fields: dict[str, str] = {"call_id": call_id}
    if sip_call_id is not None:
        fields["sip_call_id"] = sip_call_id
    if profile is not None:
        fields["profile"] = profile
    structlog.contextvars.bind_contextvars(**fields)
