"""Opening one Realtime websocket, with every failure mapped to a key-free error.

Why apart from the session: which failures are worth a retry (network, HTTP 5xx or 429,
a server that hung up during the handshake) and which end the call at once (refused
credentials, a URL that is not a Realtime endpoint) is a table of cases that depends
only on the upgrade, and the messages must name the endpoint by its redacted URL, never
a header or a key.
"""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from telephony_agent.realtime.errors import RealtimeAuthError, RealtimeProtocolError
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.wslog import websocket_logger

#: Largest frame accepted from the server (audio deltas are far smaller).
MAX_FRAME_BYTES = 16 * 2**20
CLOSE_TIMEOUT_S = 2.0

_LOGGER = websocket_logger("telephony_agent.realtime.websocket")


class Transient(Exception):
    """A failure worth retrying (network, 5xx, abnormal close); message is key-free."""


async def open_websocket(
    endpoint: Endpoint, where: str, *, open_timeout_s: float, ping_interval_s: float | None
) -> ClientConnection:
    """The websocket handshake; `where` names the endpoint in errors (redacted URL).
    Raises `Transient` for what a retry may fix, a `RealtimeError` for what it cannot."""
    try:
        return await connect(
            endpoint.url,
            additional_headers=dict(endpoint.headers),
            open_timeout=open_timeout_s,
            ping_interval=ping_interval_s,
            ping_timeout=None,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=MAX_FRAME_BYTES,
            compression=None,
            proxy=None,
            logger=_LOGGER,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise RealtimeAuthError(
                f"{where} refused the credentials (HTTP {status} on the websocket "
                "upgrade): check the API key, its scope and the model name"
            ) from None
        if status in (408, 425, 429) or status >= 500:
            raise Transient(f"HTTP {status} on the websocket upgrade") from None
        raise RealtimeProtocolError(
            f"{where} answered HTTP {status} instead of upgrading to a websocket: "
            "not a Realtime endpoint (check the URL)"
        ) from None
    except InvalidURI:
        raise RealtimeProtocolError(f"{where}: not a valid ws:// or wss:// URL") from None
    except InvalidMessage as exc:
        if isinstance(exc.__cause__, EOFError | OSError):
            raise Transient("the server closed the connection during the handshake") from None
        raise RealtimeProtocolError(
            f"{where} did not answer with HTTP: not a websocket server (check the URL)"
        ) from None
    except InvalidHandshake as exc:
        raise RealtimeProtocolError(
            f"{where} failed the websocket handshake ({type(exc).__name__}): "
            "not a Realtime endpoint (check the URL)"
        ) from None
    except TimeoutError:
        raise Transient(f"no websocket after {open_timeout_s:g} s") from None
    except OSError as exc:
        raise Transient(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    except WebSocketException as exc:
        raise RealtimeProtocolError(f"{where}: websocket error {type(exc).__name__}") from None
