"""The asyncio shell around the SIP core: sockets in, `TransactionLayer` calls, bytes out.

Why so thin: all protocol decisions live in the sans-I/O layers (message,
transaction, dialog). This module only owns the UDP socket, the TCP server and
connections, and one timer handle that always points at the transaction
layer's next deadline. Bad input never escapes as a traceback: a malformed
request that still names its transaction gets ``400`` with the reason in the
status line; anything else is dropped and counted in `stats`. Whatever a handler
still raises is answered ``500`` and counted by `LastResort`, never logged at ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from telephony_agent.netbuffers import BufferSizes, size_buffers, socket_inode, udp_drops
from telephony_agent.sip.dialog import make_response
from telephony_agent.sip.last_resort import LastResort
from telephony_agent.sip.message import SipMessage, SipParseError, SipRequest, SipResponse
from telephony_agent.sip.parser import StreamFramer, parse_message
from telephony_agent.sip.resolver import HostResolver, ResolveError, is_ip_literal
from telephony_agent.sip.transaction import (
    AckTimeout,
    ClientTransaction,
    Peer,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    Timers,
    TransactionLayer,
    TransactionTimeout,
    Transmit,
    response_peer,
)

__all__ = ["EndpointStats", "RequestHandler", "SipEndpoint"]

log = structlog.get_logger(__name__)


class RequestHandler(Protocol):
    """What the application (server or softphone) does with what arrives."""

    def on_request(
        self, request: SipRequest, transaction: ServerTransaction | None, source: Peer
    ) -> None: ...

    def on_ack_timeout(self, transaction: ServerTransaction) -> None: ...


@dataclass
class EndpointStats:
    """What arrived that we could not use, and what we answered."""

    received: int = 0
    malformed_dropped: int = 0
    bad_requests_answered: int = 0
    sent: int = 0
    send_errors: int = 0


ProvisionalCallback = Callable[[SipResponse], None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._endpoint._on_bytes(data, Peer("UDP", str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a peer that went away: retransmission timers handle it.
        log.debug("sip_udp_error", error=str(exc))


class SipEndpoint:
    """One SIP endpoint (UDP and/or TCP) with its transaction layer."""

    def __init__(
        self,
        handler: RequestHandler,
        *,
        timers: Timers | None = None,
        public_host: str | None = None,
        user_agent: str = "telephony-agent",
        socket_buffer_bytes: int | None = None,
    ) -> None:
        self.handler = handler
        #: Receive/send buffer asked for on the UDP socket (None: the kernel's default).
        self.socket_buffer_bytes = socket_buffer_bytes
        #: What the kernel granted, once listening on UDP.
        self.udp_buffers: BufferSizes | None = None
        self._udp_inode: int | None = None
        self.layer = TransactionLayer(timers)
        self.stats = EndpointStats()
        #: Exceptions that escaped a handler or a callback (answered 500, counted).
        self.last_resort = LastResort()
        #: Names in Contact, Route or SDP, looked up off the loop.
        self.resolver = HostResolver()
        self.user_agent = user_agent
        self._public_host = public_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: dict[Peer, asyncio.StreamWriter] = {}
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pending: dict[ClientTransaction, asyncio.Future[SipResponse]] = {}
        self._provisional: dict[ClientTransaction, ProvisionalCallback] = {}
        self._on_2xx_retransmit: dict[ClientTransaction, ProvisionalCallback] = {}
        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None
        self._tls_server: asyncio.Server | None = None
        #: Used for connections we open to TLS peers (verification on by default).
        self.tls_client_context: ssl.SSLContext | None = None
        #: The name to verify a TLS peer's certificate against, by address.
        self._tls_names: dict[tuple[str, int], str] = {}

    # ------------------------------------------------------------------ lifecycle

    async def listen_udp(self, host: str, port: int) -> tuple[str, int]:
        loop = self._bind_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            if self.socket_buffer_bytes is not None:
                self.udp_buffers = size_buffers(sock, self.socket_buffer_bytes)
            self._udp_inode = socket_inode(sock)
        sockname = transport.get_extra_info("sockname")
        self.udp_address = (str(sockname[0]), int(sockname[1]))
        return self.udp_address

    async def close_udp(self) -> None:
        """Give the UDP port back (before listening again elsewhere)."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
            self.udp_address = None

    def udp_drops(self) -> int:
        """Datagrams the kernel dropped on our UDP socket because its buffer was full."""
        return udp_drops([self._udp_inode]) if self._udp_inode is not None else 0

    async def listen_tcp(self, host: str, port: int) -> tuple[str, int]:
        self._bind_loop()
        self._tcp_server = await asyncio.start_server(self._on_tcp_client, host, port)
        sockname = self._tcp_server.sockets[0].getsockname()
        self.tcp_address = (str(sockname[0]), int(sockname[1]))
        return self.tcp_address

    async def listen_tls(self, host: str, port: int, context: ssl.SSLContext) -> tuple[str, int]:
        """SIP over TLS (RFC 3261 §26.2); the same framing as TCP once decrypted."""
        self._bind_loop()
        self._tls_server = await asyncio.start_server(
            self._on_tls_client, host, port, ssl=context, ssl_handshake_timeout=10.0
        )
        sockname = self._tls_server.sockets[0].getsockname()
        self.tls_address = (str(sockname[0]), int(sockname[1]))
        return self.tls_address

    def expect_tls_name(self, host: str, port: int, name: str) -> None:
        """Verify the certificate of the TLS peer at host:port against `name` (a domain)."""
        self._tls_names[(host, port)] = name

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for server in (self._tcp_server, self._tls_server):
            if server is not None:
                server.close()
                with contextlib.suppress(Exception):
                    await server.wait_closed()
        for writer in list(self._tcp_writers.values()):
            writer.close()
        for task in list(self._tcp_tasks):
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self.resolver.close()

    # ------------------------------------------------------------------ addresses

    def layer_time(self) -> float:
        """The clock the transaction layer runs on (the loop's monotonic time)."""
        return (self._loop or asyncio.get_running_loop()).time()

    def via_address(self, transport: str = "UDP") -> tuple[str, int]:
        """Host and port to put in Via and Contact (the public address behind NAT)."""
        bound = {"TCP": self.tcp_address, "TLS": self.tls_address}.get(transport, self.udp_address)
        if bound is None:
            bound = self.udp_address or self.tcp_address or ("127.0.0.1", 5060)
        host = self._public_host or bound[0]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return host, bound[1]

    # ------------------------------------------------------------------ sending

    def send_request(
        self,
        request: SipRequest,
        peer: Peer,
        *,
        on_provisional: ProvisionalCallback | None = None,
        on_2xx_retransmit: ProvisionalCallback | None = None,
    ) -> asyncio.Future[SipResponse]:
        """Send within a client transaction; the future resolves with the final response.

        A timeout (timer B/F) resolves it with a locally made 408, as §8.1.3.1 says.
        """
        if request.headers.get("User-Agent") is None:
            request.headers.add("User-Agent", self.user_agent)
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[SipResponse] = loop.create_future()
        txn = self.layer.send_request(request, peer, loop.time())
        self._pending[txn] = future
        if on_provisional is not None:
            self._provisional[txn] = on_provisional
        if on_2xx_retransmit is not None:
            self._on_2xx_retransmit[txn] = on_2xx_retransmit
        self._pump()
        return future

    def send_keepalive(self, peer: Peer) -> bool:
        """RFC 5626 §4.4.1 CRLF keep-alive on our connection to `peer`; False if none is open."""
        writer = self._tcp_writers.get(peer)
        if writer is None or writer.is_closing():
            return False
        try:
            writer.write(b"\r\n\r\n")
        except (OSError, RuntimeError):
            return False
        return True

    def send_stateless(self, request: SipRequest, peer: Peer) -> None:
        self.layer.send_stateless(request, peer)
        self._pump()

    def respond(self, transaction: ServerTransaction, response: SipResponse) -> None:
        if response.headers.get("Server") is None and response.status != 100:
            response.headers.add("Server", self.user_agent)
        loop = self._loop or asyncio.get_running_loop()
        self.layer.send_response(transaction, response, loop.time())
        self._pump()

    def respond_statelessly(self, transaction: ServerTransaction, response: SipResponse) -> None:
        """Send `response` once and forget the transaction (RFC 3261 §8.2.7).

        For refusals under load: a final response to an INVITE over UDP is otherwise
        resent until its ACK, ten times over 32 s when none comes, which a flood from
        a spoofed address would turn into traffic at someone else. A real peer that
        misses it retransmits its INVITE and is answered again.
        """
        if response.headers.get("Server") is None:
            response.headers.add("Server", self.user_agent)
        self.layer.discard(transaction)
        self._transmit(response.to_bytes(), response_peer(transaction.request, transaction.source))

    def drop(self, transaction: ServerTransaction) -> None:
        """Forget a request without answering it (its sender may retransmit)."""
        self.layer.discard(transaction)

    def _transmit(self, data: bytes, peer: Peer) -> None:
        try:
            if peer.reliable:
                writer = self._tcp_writers.get(peer)
                if writer is None or writer.is_closing():
                    self._spawn_send_task(self._connect_and_send(data, peer))
                    return
                writer.write(data)
            elif self._udp is not None:
                if not is_ip_literal(peer.host):
                    # sendto() would look the name up right here, on the loop.
                    self._spawn_send_task(self._resolve_and_send(data, peer))
                    return
                self._udp.sendto(data, (peer.host, peer.port))
            self.stats.sent += 1
        except (OSError, RuntimeError, ValueError) as exc:
            self.stats.send_errors += 1
            log.warning("sip_send_failed", peer=f"{peer.host}:{peer.port}", error=str(exc))

    def _spawn_send_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _resolve_and_send(self, data: bytes, peer: Peer) -> None:
        try:
            host = await self.resolver.resolve(peer.host)
        except ResolveError as exc:
            self.stats.send_errors += 1
            log.info("sip_send_failed", peer=f"{peer.host[:60]}:{peer.port}", error=str(exc))
            return
        self._transmit(data, Peer(peer.transport, host, peer.port))

    async def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        try:
            if peer.transport == "TLS":
                context = self.tls_client_context or ssl.create_default_context()
                name = self._tls_names.get((peer.host, peer.port), peer.host)
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        peer.host, peer.port, ssl=context, server_hostname=name
                    ),
                    15.0,
                )
            else:
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
        except (OSError, TimeoutError) as exc:
            self.stats.send_errors += 1
            log.warning(
                "sip_connect_failed",
                peer=f"{peer.host}:{peer.port}",
                transport=peer.transport,
                error=str(exc) or type(exc).__name__,
            )
            self._transport_failed(peer)
            return
        self._tcp_writers[peer] = writer
        writer.write(data)
        self.stats.sent += 1
        await self._read_stream(reader, writer, peer)

    # ------------------------------------------------------------------ receiving

    def _on_bytes(self, data: bytes, source: Peer) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # RFC 5626 keep-alive
        self.stats.received += 1
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._on_parse_error(exc, source)
            return
        try:
            self._on_message(message, source)
        except Exception as exc:
            self.last_resort.caught_exception("sip_receive", exc)

    def _on_parse_error(self, exc: SipParseError, source: Peer) -> None:
        partial = exc.partial
        if partial is None or partial.method == "ACK":
            self.stats.malformed_dropped += 1
            log.info("sip_malformed_dropped", source=f"{source.host}:{source.port}", why=exc.reason)
            return
        self.stats.bad_requests_answered += 1
        # A reason phrase is one line of text (RFC 3261 §25.1): no control characters.
        reason = "".join(c if c.isprintable() else " " for c in exc.reason)[:100]
        phrase = "Bad Request" if exc.status == 400 else "Message Too Large"
        response = make_response(partial, exc.status, f"{phrase} ({reason})")
        log.info("sip_bad_request", source=f"{source.host}:{source.port}", why=exc.reason)
        try:
            peer = response_peer(partial, source)
            self._transmit(response.to_bytes(), peer)
        except SipParseError:
            self.stats.malformed_dropped += 1

    def _on_message(self, message: SipMessage, source: Peer) -> None:
        loop = self._loop or asyncio.get_running_loop()
        try:
            self.layer.on_message(message, source, loop.time())
        except SipParseError as exc:  # e.g. an unparsable Via met while matching
            self._on_parse_error(exc, source)
            return
        self._pump()

    async def _on_tcp_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._on_stream_client(reader, writer, "TCP")

    async def _on_tls_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._on_stream_client(reader, writer, "TLS")

    async def _on_stream_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        address = writer.get_extra_info("peername")
        peer = Peer(transport, str(address[0]), int(address[1]))
        self._tcp_writers[peer] = writer
        await self._read_stream(reader, writer, peer)

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        framer = StreamFramer()
        try:
            while not framer.broken:
                data = await reader.read(65536)
                if not data:
                    break
                for item in framer.feed(data):
                    self.stats.received += 1
                    if isinstance(item, SipParseError):
                        self._on_parse_error(item, peer)
                    else:
                        self._on_message(item, peer)
        except (ConnectionError, OSError):
            pass
        except Exception as exc:
            self.last_resort.caught_exception("sip_stream", exc)
        finally:
            if self._tcp_writers.get(peer) is writer:
                del self._tcp_writers[peer]
            writer.close()

    # ------------------------------------------------------------------ the pump

    def _pump(self) -> None:
        """Send what the layer produced, hand events up, and re-arm the one timer."""
        for output in self.layer.take_outputs():
            if isinstance(output, Transmit):
                self._transmit(output.data, output.peer)
            elif isinstance(output, RequestReceived):
                self._dispatch_request(output)
            elif isinstance(output, ResponseReceived):
                self._dispatch_response(output.response, output.transaction)
            elif isinstance(output, TransactionTimeout):
                self._on_timeout(output.transaction)
            elif isinstance(output, AckTimeout):
                self._safely(self.handler.on_ack_timeout, output.transaction)
        self._arm_timer()

    def _dispatch_request(self, event: RequestReceived) -> None:
        try:
            self.handler.on_request(event.request, event.transaction, event.source)
        except Exception as exc:
            self.last_resort.caught_exception(f"sip_handler_{event.request.method[:16]}", exc)
            if event.transaction is not None:
                # Ignored by the layer when the handler already sent a final response.
                with contextlib.suppress(Exception):
                    self.respond(event.transaction, make_response(event.request, 500))

    def _dispatch_response(self, response: SipResponse, txn: ClientTransaction) -> None:
        future = self._pending.get(txn)
        if response.status < 200:
            callback = self._provisional.get(txn)
            if callback is not None:
                self._safely(callback, response)
            return
        if future is None or future.done():
            retransmit = self._on_2xx_retransmit.get(txn)
            if retransmit is not None and response.status < 300:
                self._safely(retransmit, response)
            return
        future.set_result(response)
        if not (txn.is_invite and response.status < 300):
            self._forget(txn)

    def _on_timeout(self, txn: ClientTransaction | ServerTransaction) -> None:
        if isinstance(txn, ServerTransaction):
            log.info("sip_final_not_acked", call_id=txn.request.call_id)
            return
        future = self._pending.get(txn)
        if future is not None and not future.done():
            future.set_result(make_response(txn.request, 408, "Request Timeout"))
        self._forget(txn)

    def _transport_failed(self, peer: Peer) -> None:
        """§8.1.3.1: a request that could not be sent is answered as if 503 came, at once,
        instead of waiting out timer B/F on a connection that never opened."""
        for txn, future in list(self._pending.items()):
            if txn.peer == peer and not future.done():
                future.set_result(
                    make_response(txn.request, 503, "Service Unavailable (transport error)")
                )
                self._forget(txn)

    def _forget(self, txn: ClientTransaction) -> None:
        self._pending.pop(txn, None)
        self._provisional.pop(txn, None)
        self._on_2xx_retransmit.pop(txn, None)

    def forget_invite(self, future: asyncio.Future[SipResponse]) -> None:
        """The caller is done with an INVITE's 2xx retransmissions (call over)."""
        for txn, pending in list(self._pending.items()):
            if pending is future:
                self._forget(txn)

    def _safely(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self.last_resort.caught_exception("sip_callback", exc)

    def _arm_timer(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        loop = self._loop
        if loop is None:
            return
        self.layer.on_timer(loop.time())
        self._pump()
