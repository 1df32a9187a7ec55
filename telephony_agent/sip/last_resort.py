"""What catches an exception that should never have happened, without shouting.

Why a guard and not `log.exception`: every input a peer can send is meant to be
refused by the parser or answered by the handler. If one still raises, the peer
gets a ``500`` and the process goes on — but a traceback at ERROR per message
lets anyone who finds such an input flood the logs (and page whoever watches
them). So escapes are counted (``sip_internal_errors`` in /health, which a test
keeps at zero for every known bad input) and each distinct site is logged once,
at debug, with its traceback for whoever turns debug on to find it.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import structlog

__all__ = ["LastResort"]

log = structlog.get_logger(__name__)

#: Distinct sites remembered; past this every escape is still counted, none logged.
MAX_SITES = 256


class LastResort:
    """Counts exceptions that escaped a handler; logs each site once at debug."""

    def __init__(self) -> None:
        #: Every exception caught here since start.
        self.caught = 0
        self._sites: set[str] = set()

    @property
    def sites(self) -> frozenset[str]:
        return frozenset(self._sites)

    def caught_exception(self, where: str, exc: BaseException) -> None:
        """Count `exc`, caught at `where` (a short name of the catching code)."""
        self.caught += 1
        site = f"{where}:{type(exc).__name__}@{_origin(exc)}"
        if site in self._sites or len(self._sites) >= MAX_SITES:
            return
        self._sites.add(site)
        log.debug("sip_internal_error", where=where, site=site, exc_info=exc)


def _origin(exc: BaseException) -> str:
    """Where `exc` was raised: the innermost frame's file name and line."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}"
