"""Host names from the network, resolved off the event loop with a short timeout.

Why: SIP and SDP may name hosts instead of addresses (``c=IN IP4 media.example.org``,
a Contact or Record-Route with a domain). ``socket.sendto`` with a name looks it up
synchronously, and a lookup that waits for a slow or hostile DNS server stalls every
call in the process for seconds. So names are resolved in a small thread pool of
their own (never the loop's default executor, which the provider connections need),
each lookup is cut off after `timeout_s`, at most `max_in_flight` run at once (more
are refused at once rather than queued), and answers are kept for a short while.

Refusals are `ResolveError` with a reason for a 488 or a log line; nothing else
escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["RESOLVE_TIMEOUT_S", "HostResolver", "ResolveError", "is_ip_literal"]

#: Longest a lookup may take before the name is given up on.
RESOLVE_TIMEOUT_S = 2.0


class ResolveError(Exception):
    """A name that did not resolve (in time); the message is a short reason."""


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostResolver:
    """Resolves names to one address of the wanted family, off the loop, bounded."""

    def __init__(
        self,
        *,
        timeout_s: float = RESOLVE_TIMEOUT_S,
        max_in_flight: int = 8,
        cache_s: float = 30.0,
        max_cached: int = 256,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.cache_s = cache_s
        self.max_cached = max_cached
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._cache: dict[tuple[str, int], tuple[str, float]] = {}
        #: Lookups that failed, timed out or were refused for load.
        self.failures = 0

    async def resolve(self, host: str, family: int = socket.AF_INET) -> str:
        """An address literal for `host` (returned as is when it already is one)."""
        if is_ip_literal(host):
            return host
        key = (host.lower(), family)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        if self._in_flight >= self.max_in_flight:
            self.failures += 1
            raise ResolveError(f"too many name lookups in progress for {host[:60]}")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_in_flight, "resolve")
        loop = asyncio.get_running_loop()
        # Counted until the thread is really done: a lookup cut off by the timeout
        # still holds its thread until the system resolver gives up.
        self._in_flight += 1
        work = self._executor.submit(socket.getaddrinfo, host, None, family, socket.SOCK_DGRAM)

        def done(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._lookup_done)

        work.add_done_callback(done)
        try:
            infos = await asyncio.wait_for(asyncio.wrap_future(work), self.timeout_s)
        except TimeoutError:
            self.failures += 1
            raise ResolveError(f"{host[:60]} did not resolve within {self.timeout_s:g} s") from None
        except (OSError, UnicodeError, ValueError):
            self.failures += 1
            raise ResolveError(f"{host[:60]} does not resolve") from None
        address = str(infos[0][4][0]) if infos else ""
        if not address:
            self.failures += 1
            raise ResolveError(f"{host[:60]} has no address")
        if len(self._cache) >= self.max_cached:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (address, now + self.cache_s)
        return address

    def _lookup_done(self) -> None:
        self._in_flight -= 1

    def close(self) -> None:
        """Stop the lookup threads (a lookup still running finishes on its own)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
