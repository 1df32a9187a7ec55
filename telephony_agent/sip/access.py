"""Who may reach the agent: an address allowlist and a ban for sources that keep
failing authentication (sans-I/O, bounded memory).

Why: `serve` on a public address answers anyone who finds port 5060, and every call
it answers spends the operator's model budget. Trunks and PBXs have fixed addresses
(an allowlist covers them); devices authenticate, and a source that guesses
passwords is shut out for a while instead of being answered forever.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from telephony_agent.errors import ConfigError

__all__ = ["AccessList", "FailureBans", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], key: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) from settings; a bad one is one line naming it."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"{key} = {value!r}: expected an address or a CIDR range, e.g. 203.0.113.0/24"
            ) from None
    return tuple(networks)


class AccessList:
    """An allowlist of networks; empty means everyone is allowed."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)
        self.denied = 0

    @property
    def open(self) -> bool:
        return not self.networks

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            self.denied += 1
            return False
        if any(address in network for network in self.networks):
            return True
        self.denied += 1
        return False


@dataclass
class _Record:
    failures: int = 0
    window_start: float = 0.0
    banned_until: float = 0.0


class FailureBans:
    """Bans a source after `max_failures` failed authentications within `window_s`.

    Memory is bounded: the least recently seen sources are forgotten first once
    `max_sources` are tracked (a forgotten source simply starts from zero).
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        ban_s: float = 600.0,
        max_sources: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.ban_s = ban_s
        self._max_sources = max_sources
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self.bans = 0
        self.refused = 0

    def is_banned(self, host: str, now: float) -> bool:
        record = self._records.get(host)
        if record is None or record.banned_until <= now:
            return False
        self.refused += 1
        return True

    def failed(self, host: str, now: float) -> bool:
        """Count a failure; True when this one starts a ban."""
        record = self._records.get(host)
        if record is None:
            record = _Record(window_start=now)
            self._records[host] = record
            while len(self._records) > self._max_sources:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(host)
        if now - record.window_start > self.window_s:
            record.failures = 0
            record.window_start = now
        record.failures += 1
        if record.failures >= self.max_failures and record.banned_until <= now:
            record.banned_until = now + self.ban_s
            record.failures = 0
            self.bans += 1
            return True
        return False

    def succeeded(self, host: str) -> None:
        self._records.pop(host, None)

    def __len__(self) -> int:
        return len(self._records)
