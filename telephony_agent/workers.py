"""`serve --workers K`: what each worker process listens on, and when a dead one restarts.

Why processes and not threads: one Python process uses one core for its media path
(the GIL), so K workers on K cores carry about K times the calls. Each worker is a
whole `serve` with its own SIP port, HTTP port and slice of the RTP range, so a
dispatcher in front (deploy/kamailio) spreads calls over them exactly as it would over
separate machines, and a worker that dies takes only its own calls with it.

This module is the sans-I/O part: the settings of worker `index` of `count`, derived
from the one settings file, and the restart backoff. `commands/serve_workers.py` runs
the processes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from telephony_agent.config import Settings, parse_host_port
from telephony_agent.errors import ConfigError

__all__ = ["MAX_WORKERS", "RestartBackoff", "worker_instance", "worker_settings"]

#: More workers than this on one machine is a configuration mistake, not a deployment.
MAX_WORKERS = 64
#: RTP ports each worker needs at least (two calls' even/odd pairs).
_MIN_RTP_PORTS = 4


def worker_settings(settings: Settings, index: int, count: int) -> Settings:
    """The settings of worker `index` (0-based) of `count`.

    SIP (and TLS), HTTP and a fixed local backend port are the configured port plus
    `index` (port 0 stays 0: any free port). The RTP range is cut into `count`
    contiguous slices, each starting on an even port. Everything else is shared.
    """
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"--workers {count}: expected 1 to {MAX_WORKERS}")
    if not 0 <= index < count:
        raise ConfigError(f"--worker {index}: expected 0 to {count - 1}")
    sip = settings.sip
    sip_host, sip_port = parse_host_port("sip.listen", sip.listen)
    http_host, http_port = parse_host_port("http.listen", settings.http.listen)
    rtp_min, rtp_max = _rtp_slice(settings, index, count)
    return replace(
        settings,
        sip=replace(
            sip,
            listen=_join(sip_host, _shifted("sip.listen", sip_port, index)),
            tls_port=_shifted("sip.tls_port", sip.tls_port, index),
        ),
        http=replace(
            settings.http, listen=_join(http_host, _shifted("http.listen", http_port, index))
        ),
        rtp=replace(settings.rtp, port_min=rtp_min, port_max=rtp_max),
        local=replace(settings.local, port=_shifted("local.port", settings.local.port, index)),
    )


def worker_instance(base: str, index: int | None) -> str:
    """The records' instance name of a worker: its own, so a restarted worker closes
    only the calls it left open itself, never a live call of its siblings."""
    return base if index is None else f"{base}/worker-{index}"


def _rtp_slice(settings: Settings, index: int, count: int) -> tuple[int, int]:
    rtp = settings.rtp
    first = rtp.port_min + rtp.port_min % 2  # pairs start on an even port
    per_worker = (rtp.port_max + 1 - first) // count
    per_worker -= per_worker % 2
    if per_worker < _MIN_RTP_PORTS:
        raise ConfigError(
            f"rtp.port_min = {rtp.port_min}, rtp.port_max = {rtp.port_max}: expected at least "
            f"{_MIN_RTP_PORTS * count} ports for {count} workers ({_MIN_RTP_PORTS} each)"
        )
    start = first + index * per_worker
    return start, start + per_worker - 1


def _shifted(key: str, port: int, index: int) -> int:
    if port == 0:
        return 0
    shifted = port + index
    if shifted > 65535:
        raise ConfigError(
            f"{key} port {port}: expected at most {65535 - index}, so that worker {index} "
            f"can listen on port {port} + {index}"
        )
    return shifted


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class RestartBackoff:
    """Seconds to wait before restarting a worker that died: doubling from `first_s` up
    to `max_s`, back to `first_s` once a worker has run `stable_s` (a crash loop does
    not spin, an occasional crash is repaired at once)."""

    first_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0
    _next_s: float = 0.0

    def delay(self, ran_s: float) -> float:
        """The wait before the next start, given how long the last run lasted."""
        if ran_s >= self.stable_s or self._next_s == 0.0:
            self._next_s = self.first_s
        else:
            self._next_s = min(self._next_s * 2.0, self.max_s)
        return self._next_s
