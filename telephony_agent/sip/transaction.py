"""RFC 3261 §17 transactions, sans-I/O: messages and time in, datagrams and events out.

Why a transaction layer of our own: over UDP everything is retransmitted. A
gateway that does not see our 200 OK quickly sends its INVITE again with the
same branch; treating that as a new call (as several Python stacks do) answers
one caller twice. This layer matches every message to its transaction
(§17.1.3/§17.2.3), absorbs retransmissions by replaying the last response, and
runs timers A-K exactly as the RFC's four state machines say, plus the
"Accepted" states of RFC 6026 that keep a 2xx alive until its ACK arrives.

Nothing here touches a socket or a clock: every method takes ``now`` (seconds,
any monotonic origin), the shell sends whatever `take_outputs` returns and calls
`on_timer` at `next_deadline`. Tests drive it with a fake clock.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import secrets
from dataclasses import dataclass, field

from telephony_agent.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    Via,
)

__all__ = [
    "AckTimeout",
    "ClientTransaction",
    "Output",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "State",
    "Timers",
    "TransactionLayer",
    "TransactionTimeout",
    "Transmit",
    "new_branch",
]

MAGIC_COOKIE = "z9hG4bK"
#: Longest an INVITE we sent may stay in Proceeding without a final response.
PROCEEDING_CAP_S = 180.0


def new_branch() -> str:
    """A globally unique RFC 3261 branch (the magic cookie marks it as such)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


@dataclass(frozen=True)
class Peer:
    """Where a message came from or goes to. For TCP the shell maps it to a connection."""

    transport: str  # "UDP" or "TCP"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer bases in seconds (Table 4). Tests shrink them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# ---------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Transmit:
    """Bytes the shell must send to `peer` now."""

    data: bytes
    peer: Peer


@dataclass(frozen=True)
class RequestReceived:
    """A new request for the transaction user. ACKs for 2xx have no transaction."""

    request: SipRequest
    source: Peer
    transaction: ServerTransaction | None


@dataclass(frozen=True)
class ResponseReceived:
    """A response the transaction user must see (provisional, final, 2xx retransmits)."""

    response: SipResponse
    transaction: ClientTransaction


@dataclass(frozen=True)
class TransactionTimeout:
    """Timer B/F (no answer: the user acts as if 408 came) or H (our final never ACKed)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True)
class AckTimeout:
    """Our 2xx to an INVITE was not ACKed within 64*T1: the user should send BYE."""

    transaction: ServerTransaction


Output = Transmit | RequestReceived | ResponseReceived | TransactionTimeout | AckTimeout


# ---------------------------------------------------------------------- transactions


@dataclass(eq=False)
class ServerTransaction:
    """One request we received and the responses we give it."""

    key: tuple[str, str, str]
    request: SipRequest
    source: Peer
    state: State
    last_response: SipResponse | None = None
    last_response_bytes: bytes = b""
    response_peer: Peer | None = None
    retransmit_interval: float = 0.0
    timers: dict[str, float] = field(default_factory=dict)

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"


@dataclass(eq=False)
class ClientTransaction:
    """One request we sent, retransmitted until it is answered or times out."""

    key: tuple[str, str]
    request: SipRequest
    request_bytes: bytes
    peer: Peer
    state: State
    retransmit_interval: float = 0.0
    ack_bytes: bytes = b""
    final_response: SipResponse | None = None
    timers: dict[str, float] = field(default_factory=dict)

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"


@dataclass
class LayerStats:
    """Counters for what the layer absorbed or dropped."""

    retransmissions_absorbed: int = 0
    stray_responses: int = 0
    stray_acks: int = 0
    timeouts: int = 0


class TransactionLayer:
    """All client and server transactions of one SIP endpoint."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self.stats = LayerStats()
        self._server: dict[tuple[str, str, str], ServerTransaction] = {}
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        # 2xx responses waiting for their ACK, keyed by (Call-ID, CSeq number).
        self._awaiting_ack: dict[tuple[str, int], ServerTransaction] = {}
        self._heap: list[tuple[float, int, str, ServerTransaction | ClientTransaction]] = []
        self._sequence = itertools.count()
        self._outputs: list[Output] = []

    # ------------------------------------------------------------------ outputs

    def take_outputs(self) -> list[Output]:
        outputs, self._outputs = self._outputs, []
        return outputs

    def next_deadline(self) -> float | None:
        """When `on_timer` must next be called (None: no timer is running)."""
        while self._heap:
            deadline, _, name, txn = self._heap[0]
            if txn.timers.get(name) == deadline and txn.state is not State.TERMINATED:
                return deadline
            heapq.heappop(self._heap)
        return None

    @property
    def server_count(self) -> int:
        return len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    # ------------------------------------------------------------------ inbound

    def on_message(self, message: SipMessage, source: Peer, now: float) -> None:
        if isinstance(message, SipRequest):
            self._on_request(message, source, now)
        else:
            self._on_response(message, now)

    def _on_request(self, request: SipRequest, source: Peer, now: float) -> None:
        _stamp_received(request, source)
        key = _server_key(request)
        txn = self._server.get(key)
        if request.method == "ACK":
            # RFC 6026 §7.1: in Accepted the ACK is the 2xx's, not the transaction's; it
            # matches here when the peer reuses the INVITE branch (RFC 2543 peers always
            # do), and must still stop the 2xx retransmissions and reach the dialog.
            if txn is not None and txn.is_invite and txn.state is not State.ACCEPTED:
                if txn.state is State.COMPLETED:
                    txn.state = State.CONFIRMED
                    self._cancel_timer(txn, "G")
                    self._cancel_timer(txn, "H")
                    self._start_timer(txn, "I", now, 0.0 if source.reliable else self.timers.t4)
                else:
                    self.stats.retransmissions_absorbed += 1
                return
            pending = self._awaiting_ack.pop((request.call_id, request.cseq[0]), None)
            if pending is None:
                self.stats.stray_acks += 1
            else:
                self._cancel_timer(pending, "G2xx")
            # ACK for a 2xx is its own transaction-less request: the dialog wants it.
            self._outputs.append(RequestReceived(request, source, None))
            return
        if txn is not None:
            self.stats.retransmissions_absorbed += 1
            if txn.last_response_bytes and txn.response_peer is not None:
                self._outputs.append(Transmit(txn.last_response_bytes, txn.response_peer))
            return
        state = State.PROCEEDING if request.method == "INVITE" else State.TRYING
        txn = ServerTransaction(key, request, source, state)
        self._server[key] = txn
        self._outputs.append(RequestReceived(request, source, txn))

    def _on_response(self, response: SipResponse, now: float) -> None:
        branch = response.top_via.branch or ""
        method = response.cseq[1]
        txn = self._client.get((branch, method))
        if txn is None:
            self.stats.stray_responses += 1
            return
        status = response.status
        if txn.is_invite:
            self._invite_client_response(txn, response, now)
            return
        if txn.state in (State.TRYING, State.PROCEEDING):
            if status < 200:
                txn.state = State.PROCEEDING
                self._outputs.append(ResponseReceived(response, txn))
                return
            txn.state = State.COMPLETED
            txn.final_response = response
            self._cancel_timer(txn, "E")
            self._cancel_timer(txn, "F")
            self._start_timer(txn, "K", now, 0.0 if txn.peer.reliable else self.timers.t4)
            self._outputs.append(ResponseReceived(response, txn))
        else:
            self.stats.retransmissions_absorbed += 1

    def _invite_client_response(
        self, txn: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        status = response.status
        if status < 200:
            if txn.state in (State.CALLING, State.PROCEEDING):
                txn.state = State.PROCEEDING
                # §17.1.1.2: timer B only runs in Calling. A callee may ring for minutes;
                # ending the call is the user's decision (CANCEL), not a timeout's.
                self._cancel_timer(txn, "A")
                self._cancel_timer(txn, "B")
                # A safety cap in the spirit of timer C (§16.6): a transaction whose
                # final response never comes, even after CANCEL, must not live forever.
                self._start_timer(txn, "C", now, PROCEEDING_CAP_S)
                self._outputs.append(ResponseReceived(response, txn))
            return
        if status < 300:
            if txn.state in (State.CALLING, State.PROCEEDING):
                txn.state = State.ACCEPTED
                txn.final_response = response
                self._cancel_timer(txn, "A")
                self._cancel_timer(txn, "B")
                self._cancel_timer(txn, "C")
                self._start_timer(txn, "M", now, 64 * self.timers.t1)
            # In Accepted, 2xx retransmissions go up so the user re-sends its ACK.
            if txn.state is State.ACCEPTED:
                self._outputs.append(ResponseReceived(response, txn))
            return
        if txn.state in (State.CALLING, State.PROCEEDING):
            txn.state = State.COMPLETED
            txn.final_response = response
            self._cancel_timer(txn, "A")
            self._cancel_timer(txn, "B")
            self._cancel_timer(txn, "C")
            txn.ack_bytes = _ack_for_failure(txn.request, response).to_bytes()
            self._outputs.append(Transmit(txn.ack_bytes, txn.peer))
            self._start_timer(txn, "D", now, 0.0 if txn.peer.reliable else 32.0)
            self._outputs.append(ResponseReceived(response, txn))
        elif txn.state is State.COMPLETED:
            self.stats.retransmissions_absorbed += 1
            self._outputs.append(Transmit(txn.ack_bytes, txn.peer))

    # ------------------------------------------------------------------ outbound

    def send_request(self, request: SipRequest, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction; the request must already carry its Via/branch.

        ACK is never a transaction: it is transmitted once and None-like handled by
        the caller through `send_stateless`.
        """
        if request.method == "ACK":
            raise ValueError("ACK is sent with send_stateless, not as a transaction")
        branch = request.top_via.branch or ""
        data = request.to_bytes()
        state = State.CALLING if request.method == "INVITE" else State.TRYING
        txn = ClientTransaction((branch, request.method), request, data, peer, state)
        self._client[txn.key] = txn
        self._outputs.append(Transmit(data, peer))
        t1 = self.timers.t1
        if not peer.reliable:
            txn.retransmit_interval = t1
            self._start_timer(txn, "A" if txn.is_invite else "E", now, t1)
        self._start_timer(txn, "B" if txn.is_invite else "F", now, 64 * t1)
        return txn

    def send_stateless(self, request: SipRequest, peer: Peer) -> None:
        """Send a request outside any transaction (the ACK for a 2xx)."""
        self._outputs.append(Transmit(request.to_bytes(), peer))

    def send_response(self, txn: ServerTransaction, response: SipResponse, now: float) -> None:
        """Send `response` within `txn` and move its state machine."""
        if txn.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED, State.ACCEPTED):
            return  # a final response was already sent; RFC 3261 allows only one
        peer = response_peer(txn.request, txn.source)
        data = response.to_bytes()
        txn.last_response = response
        txn.last_response_bytes = data
        txn.response_peer = peer
        self._outputs.append(Transmit(data, peer))
        status = response.status
        t1 = self.timers.t1
        if status < 200:
            if txn.state is State.TRYING:
                txn.state = State.PROCEEDING
            return
        if txn.is_invite:
            if status < 300:
                # RFC 6026 Accepted: absorb INVITE retransmits, re-send our 2xx until ACK.
                # §13.3.1.4: the 2xx is retransmitted whatever the transport, because a
                # UDP hop may lie between the proxy we talk TCP to and the caller.
                txn.state = State.ACCEPTED
                self._start_timer(txn, "L", now, 64 * t1)
                self._awaiting_ack[(txn.request.call_id, txn.request.cseq[0])] = txn
                txn.retransmit_interval = t1
                self._start_timer(txn, "G2xx", now, t1)
                self._start_timer(txn, "H2xx", now, 64 * t1)
            else:
                txn.state = State.COMPLETED
                if not peer.reliable:
                    txn.retransmit_interval = t1
                    self._start_timer(txn, "G", now, t1)
                self._start_timer(txn, "H", now, 64 * t1)
        else:
            txn.state = State.COMPLETED
            self._start_timer(txn, "J", now, 0.0 if peer.reliable else 64 * t1)

    def discard(self, txn: ServerTransaction) -> None:
        """Forget a server transaction without a state machine's ending: a request
        dropped or answered statelessly (RFC 3261 §8.2.7). Its retransmissions then
        arrive as new requests and are judged again."""
        self._terminate_server(txn)

    def find_invite(self, cancel: SipRequest) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (same branch, §9.2)."""
        branch, sent_by, _ = _server_key(cancel)
        return self._server.get((branch, sent_by, "INVITE"))

    # ------------------------------------------------------------------ timers

    def _start_timer(
        self, txn: ServerTransaction | ClientTransaction, name: str, now: float, delay: float
    ) -> None:
        deadline = now + delay
        txn.timers[name] = deadline
        heapq.heappush(self._heap, (deadline, next(self._sequence), name, txn))

    @staticmethod
    def _cancel_timer(txn: ServerTransaction | ClientTransaction, name: str) -> None:
        txn.timers.pop(name, None)

    def on_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before `now`."""
        while self._heap and self._heap[0][0] <= now:
            deadline, _, name, txn = heapq.heappop(self._heap)
            if txn.timers.get(name) != deadline or txn.state is State.TERMINATED:
                continue
            del txn.timers[name]
            if isinstance(txn, ClientTransaction):
                self._fire_client(txn, name, now)
            else:
                self._fire_server(txn, name, now)

    def _fire_client(self, txn: ClientTransaction, name: str, now: float) -> None:
        timers = self.timers
        if name == "A":
            self._outputs.append(Transmit(txn.request_bytes, txn.peer))
            txn.retransmit_interval *= 2
            self._start_timer(txn, "A", now, txn.retransmit_interval)
        elif name == "E":
            self._outputs.append(Transmit(txn.request_bytes, txn.peer))
            if txn.state is State.PROCEEDING:
                txn.retransmit_interval = timers.t2
            else:
                txn.retransmit_interval = min(2 * txn.retransmit_interval, timers.t2)
            self._start_timer(txn, "E", now, txn.retransmit_interval)
        elif name in ("B", "F", "C"):
            self.stats.timeouts += 1
            self._terminate_client(txn)
            self._outputs.append(TransactionTimeout(txn))
        elif name in ("D", "K", "M"):
            self._terminate_client(txn)

    def _fire_server(self, txn: ServerTransaction, name: str, now: float) -> None:
        key = (txn.request.call_id, txn.request.cseq[0])
        if name in ("G", "G2xx"):
            if txn.response_peer is not None:
                self._outputs.append(Transmit(txn.last_response_bytes, txn.response_peer))
            txn.retransmit_interval = min(2 * txn.retransmit_interval, self.timers.t2)
            self._start_timer(txn, name, now, txn.retransmit_interval)
        elif name == "H":
            self.stats.timeouts += 1
            self._terminate_server(txn)
            self._outputs.append(TransactionTimeout(txn))
        elif name == "H2xx":
            self._cancel_timer(txn, "G2xx")
            if self._awaiting_ack.get(key) is txn:
                del self._awaiting_ack[key]
                self.stats.timeouts += 1
                self._outputs.append(AckTimeout(txn))
            if "L" not in txn.timers:
                self._terminate_server(txn)
        elif name in ("I", "J", "L"):
            if name == "L" and "H2xx" in txn.timers and self._awaiting_ack.get(key) is txn:
                return  # still waiting for the ACK; H2xx ends it and reports AckTimeout
            self._terminate_server(txn)

    def _terminate_client(self, txn: ClientTransaction) -> None:
        txn.state = State.TERMINATED
        txn.timers.clear()
        if self._client.get(txn.key) is txn:
            del self._client[txn.key]

    def _terminate_server(self, txn: ServerTransaction) -> None:
        txn.state = State.TERMINATED
        txn.timers.clear()
        if self._server.get(txn.key) is txn:
            del self._server[txn.key]
        key = (txn.request.call_id, txn.request.cseq[0])
        if self._awaiting_ack.get(key) is txn:
            del self._awaiting_ack[key]


# ---------------------------------------------------------------------- helpers


def _server_key(request: SipRequest) -> tuple[str, str, str]:
    """§17.2.3: branch + sent-by + method (ACK matches its INVITE)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if not branch.startswith(MAGIC_COOKIE):
        # RFC 2543 peers: fall back to the fields that identify the request.
        branch = "|".join(
            (request.call_id, str(request.cseq[0]), request.headers.get("From") or "")
        )
    return branch, f"{via.host}:{via.port or 5060}", method


def _stamp_received(request: SipRequest, source: Peer) -> None:
    """§18.2.1 and RFC 3581: record where the request really came from in its top Via."""
    values = request.headers.get_all("Via")
    via = Via.parse(values[0])
    params = dict(via.params)
    changed = False
    if via.host != source.host:
        params["received"] = source.host
        changed = True
    if "rport" in params and params["rport"] is None:
        params["rport"] = str(source.port)
        params.setdefault("received", source.host)
        changed = True
    if not changed:
        return
    stamped = Via(via.transport, via.host, via.port, params)
    rest = [(name, value) for name, value in request.headers if name != "Via"]
    vias = [str(stamped), *values[1:]]
    first_via = next(i for i, (name, _) in enumerate(request.headers) if name == "Via")
    fields = rest[:first_via] + [("Via", v) for v in vias] + rest[first_via:]
    request.headers = Headers(fields)


def response_peer(request: SipRequest, source: Peer) -> Peer:
    """Where responses to `request` go (§18.2.2, RFC 3581 symmetric response routing)."""
    if source.reliable:
        return source
    via = request.top_via
    if "rport" in via.params:
        return source
    host = via.params.get("received") or via.host
    return Peer(source.transport, host, via.port or 5060)


def _ack_for_failure(request: SipRequest, response: SipResponse) -> SipRequest:
    """§17.1.1.3: the ACK a client INVITE transaction sends for a 3xx-6xx itself."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} ACK")
    return SipRequest("ACK", request.uri, headers)
