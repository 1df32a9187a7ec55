"""`telephony-agent serve`: answer SIP and browser calls with the agent until stopped.

With no API key the built-in local backend answers (echo by default), so a
gateway — or the demo page on the HTTP address — can be heard working before any
account exists. The HTTP side also serves `/health` and WebRTC/WHIP signalling.
SIGINT/SIGTERM stop taking calls (503), hang up the ones in progress (BYE for SIP,
a closed peer connection for browsers), and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from telephony_agent.commands.runtime import open_provider, settings_from_args
from telephony_agent.config import parse_host_port
from telephony_agent.server.http_app import HttpServer, resolve_http_token
from telephony_agent.server.sip_server import AgentSipServer


async def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # Resolved before anything starts: a configured but missing token must stop us here.
    token = resolve_http_token(settings)
    runtime = await open_provider(settings)
    server = AgentSipServer(settings, runtime.endpoint, runtime.resolved.name)
    http: HttpServer | None = None
    try:
        # Built first: it checks [webrtc] (ICE servers, TURN credential) before anything listens.
        http = HttpServer(server, settings, token=token)
        await server.start()
        host, port = parse_host_port("http.listen", settings.http.listen)
        await http.start(host, port)
        sip_host, _ = parse_host_port("sip.listen", settings.sip.listen)
        shown = server.media_address if sip_host in ("0.0.0.0", "::") else sip_host
        # A browser grants the microphone only to a secure context: loopback qualifies.
        page_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        guarded = " (signalling needs the bearer token)" if token else ""
        print(
            f"telephony-agent: answering SIP on {sip_host}:{server.sip_port} "
            f"({settings.sip.transports}; dial sip:agent@{shown}:{server.sip_port}), "
            f"health on http://{host}:{http.port}/health, "
            f"browser calls on http://{page_host}:{http.port}/{guarded}, "
            f"provider {runtime.resolved.name}",
            file=sys.stderr,
            flush=True,
        )
        await _wait_for_stop()
        print("telephony-agent: stopping, hanging up active calls", file=sys.stderr, flush=True)
    finally:
        if http is not None:
            await http.close()
        await server.shutdown()
        await runtime.close()
    return 0


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
