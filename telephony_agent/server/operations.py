"""Operations routes: `/metrics` for Prometheus, `/healthz` and `/readyz` for orchestrators.

Why open (no token), like `/health`: probes and scrapers are configured per port, not
per secret, and none of these answers holds a caller's data — counts, latencies and
profile names only. Put the HTTP port on a private network or behind the proxy that
terminates TLS (docs/operations.md).

* ``GET /metrics`` — the Prometheus text format, read from the service's own counters
  at scrape time (`observability/collector.py`).
* ``GET /healthz`` — 200 while the process and its event loop answer.
* ``GET /readyz`` — 200 when new calls are welcome; 503 while draining, full, not
  listening for SIP, or unable to reach the records database. The JSON body names
  each check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from telephony_agent.observability.call_log import CallEventLog
from telephony_agent.observability.call_metrics import CallMetrics
from telephony_agent.observability.collector import MetricsSources, build_registry
from telephony_agent.observability.live import LiveFeed
from telephony_agent.observability.readiness import Readiness, RecordsProbe
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard

__all__ = ["OPERATIONS_KEY", "Operations", "operations_routes"]


@dataclass
class Operations:
    """What the operations routes and the live page read, attached to one switchboard."""

    metrics: CallMetrics
    registry: CollectorRegistry
    readiness: Readiness
    live: LiveFeed

    @classmethod
    def attach(
        cls,
        board: Switchboard,
        *,
        sip: AgentSipServer | None = None,
        records_health: Callable[[], Mapping[str, object]] | None = None,
        records_ping: Callable[[], Awaitable[object]] | None = None,
        registrations: Callable[[], Mapping[str, bool]] | None = None,
    ) -> Operations:
        """Add the metrics, call-event log and live-page listeners to `board`."""
        metrics = CallMetrics()
        live = LiveFeed(board)
        for listener in (metrics, CallEventLog(), live):
            board.add_listener(listener)
        sources = MetricsSources(
            board=board,
            calls=metrics,
            sip_traffic=sip.traffic if sip is not None else None,
            sip_endpoint=(lambda: asdict(sip.endpoint.stats)) if sip is not None else None,
            records=records_health,
            registrations=registrations,
        )
        readiness = Readiness(
            board,
            sip_listening=(lambda: sip.listening) if sip is not None else None,
            records=RecordsProbe(records_ping) if records_ping is not None else None,
        )
        return cls(metrics, build_registry(sources), readiness, live)


OPERATIONS_KEY = web.AppKey("operations", Operations)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[OPERATIONS_KEY].registry)
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})


async def _readyz(request: web.Request) -> web.Response:
    state = await request.app[OPERATIONS_KEY].readiness.check()
    return web.json_response(
        state.as_json(), status=200 if state.ready else 503, headers={"Cache-Control": "no-store"}
    )


def operations_routes() -> list[web.RouteDef]:
    return [
        web.get("/metrics", _metrics),
        web.get("/healthz", _healthz),
        web.get("/readyz", _readyz),
    ]
