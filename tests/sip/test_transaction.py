"""RFC 3261 §17 transaction state machines (plus RFC 6026 Accepted) on a fake clock.

Every timer is checked to fire exactly when the RFC says, over UDP and TCP, with the
default T1 = 0.5 s, T2 = 4 s, T4 = 5 s. Time is a plain float: the harness calls
`on_timer` at each `next_deadline` and records what came out at which instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony_agent.sip.message import (
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    Via,
)
from telephony_agent.sip.parser import parse_message
from telephony_agent.sip.transaction import (
    PROCEEDING_CAP_S,
    AckTimeout,
    ClientTransaction,
    Output,
    Peer,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    Timers,
    TransactionLayer,
    TransactionTimeout,
    Transmit,
    new_branch,
    response_peer,
)

T1, T2, T4 = 0.5, 4.0, 5.0
UDP = Peer("UDP", "192.0.2.10", 5060)
TCP = Peer("TCP", "192.0.2.10", 40123)


def exact(value: float) -> object:
    return pytest.approx(value, abs=1e-9)


# ---------------------------------------------------------------------- builders


def make_request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKbranch1",
    cseq: int = 1,
    call_id: str = "call-1",
    via: str = "192.0.2.10:5060",
    transport: str = "UDP",
    via_params: str = "",
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> SipRequest:
    """A request as it arrives off the wire (parsed from bytes, like the shell does)."""
    to = "<sip:agent@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {via};branch={branch}{via_params}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:caller@example.com>;tag=from1"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            *extra,
        ]
    )
    wire = SipRequest(method, "sip:agent@192.0.2.1", headers).to_bytes()
    parsed = parse_message(wire)
    assert isinstance(parsed, SipRequest)
    return parsed


def make_reply(req: SipRequest, status: int, *, to_tag: str | None = "totag") -> SipResponse:
    """A response to `req` (ours as a server, or the far end's to our client request)."""
    headers = Headers()
    for value in req.headers.get_all("Via"):
        headers.add("Via", value)
    to = NameAddr.parse(req.headers.get("To") or "")
    if to_tag is not None and status > 100 and to.tag is None:
        to = to.with_tag(to_tag)
    headers.add("From", req.headers.get("From") or "")
    headers.add("To", str(to))
    headers.add("Call-ID", req.call_id)
    headers.add("CSeq", req.headers.get("CSeq") or "")
    return SipResponse(status, "Reason", headers)


def wire(message: SipRequest | SipResponse) -> SipRequest | SipResponse:
    return parse_message(message.to_bytes())


def ack_for_2xx(invite: SipRequest, *, branch: str = "z9hG4bKack2xx") -> SipRequest:
    """§13.2.2.4: a new branch, the INVITE's Call-ID and CSeq number, method ACK."""
    return make_request("ACK", branch=branch, cseq=invite.cseq[0], call_id=invite.call_id)


# ---------------------------------------------------------------------- harness


@dataclass
class Harness:
    """A transaction layer plus a fake clock and a log of (time, output)."""

    layer: TransactionLayer = field(default_factory=lambda: TransactionLayer(Timers()))
    now: float = 0.0
    log: list[tuple[float, Output]] = field(default_factory=list)

    def collect(self) -> list[Output]:
        outputs = self.layer.take_outputs()
        self.log.extend((self.now, output) for output in outputs)
        return outputs

    def advance(self, until: float) -> list[Output]:
        """Fire every timer up to `until`, each exactly at its deadline."""
        fired: list[Output] = []
        while (deadline := self.layer.next_deadline()) is not None and deadline <= until:
            assert deadline >= self.now, "a deadline in the past"
            self.now = deadline
            self.layer.on_timer(deadline)
            fired.extend(self.collect())
        self.now = max(self.now, until)
        return fired

    def at(self, t: float) -> None:
        self.advance(t)

    def receive(self, message: SipRequest | SipResponse, source: Peer = UDP) -> list[Output]:
        self.layer.on_message(message, source, self.now)
        return self.collect()

    def send(self, req: SipRequest, peer: Peer = UDP) -> ClientTransaction:
        txn = self.layer.send_request(req, peer, self.now)
        self.collect()
        return txn

    def respond(self, txn: ServerTransaction, resp: SipResponse) -> list[Output]:
        self.layer.send_response(txn, resp, self.now)
        return self.collect()

    def transmit_times(self, since: float = -1.0) -> list[float]:
        return [t for t, out in self.log if isinstance(out, Transmit) and t > since]


def state(txn: ClientTransaction | ServerTransaction) -> State:
    """The current state (a call, so type checkers do not pin it after one assert)."""
    return txn.state


def transmits(outputs: list[Output]) -> list[Transmit]:
    return [o for o in outputs if isinstance(o, Transmit)]


def of_type(outputs: list[Output], kind: type) -> list[Output]:
    return [o for o in outputs if isinstance(o, kind)]


def server_txn(outputs: list[Output]) -> ServerTransaction:
    events = [o for o in outputs if isinstance(o, RequestReceived)]
    assert len(events) == 1
    assert events[0].transaction is not None
    return events[0].transaction


def doubling(start: float, first: float, cap: float | None, until: float) -> list[float]:
    """Instants of a retransmission timer: first at start+first, interval doubling to cap."""
    times: list[float] = []
    t, interval = start + first, first
    while t < until - 1e-9:
        times.append(t)
        interval = interval * 2 if cap is None else min(interval * 2, cap)
        t += interval
    return times


# ---------------------------------------------------------------------- INVITE client


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    h = Harness()
    txn = h.send(make_request())
    assert h.transmit_times() == [0.0]
    assert state(txn) is State.CALLING
    h.advance(100.0)
    assert h.transmit_times(0.0) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    timeouts = [(t, o) for t, o in h.log if isinstance(o, TransactionTimeout)]
    assert timeouts == [(exact(64 * T1), TransactionTimeout(txn))]
    assert state(txn) is State.TERMINATED
    assert h.layer.client_count == 0
    assert h.layer.stats.timeouts == 1
    # Every retransmission is the original bytes.
    assert {out.data for _, out in h.log if isinstance(out, Transmit)} == {txn.request_bytes}


def test_invite_client_over_tcp_never_retransmits() -> None:
    h = Harness()
    txn = h.send(make_request(transport="TCP"), TCP)
    assert h.layer.next_deadline() == exact(32.0)
    h.advance(100.0)
    assert h.transmit_times() == [0.0]
    assert [t for t, o in h.log if isinstance(o, TransactionTimeout)] == [exact(32.0)]
    assert state(txn) is State.TERMINATED


def test_invite_client_provisional_stops_a_and_b() -> None:
    h = Harness()
    invite = make_request()
    txn = h.send(invite)
    h.at(1.0)
    out = h.receive(wire(make_reply(invite, 180)))
    assert [type(o) for o in out] == [ResponseReceived]
    assert state(txn) is State.PROCEEDING
    # §17.1.1.2: no more retransmissions, and timer B only runs in Calling — a callee may
    # ring for minutes. Only the safety cap (timer C's role) is left.
    assert h.layer.next_deadline() == pytest.approx(1.0 + PROCEEDING_CAP_S)
    h.advance(PROCEEDING_CAP_S - 1.0)
    assert h.transmit_times() == [0.0, 0.5]
    assert not of_type([o for _, o in h.log], TransactionTimeout)
    more = h.receive(wire(make_reply(invite, 183)))
    assert [type(o) for o in more] == [ResponseReceived]
    assert h.layer.client_count == 1


def test_invite_client_stuck_in_proceeding_is_capped() -> None:
    h = Harness()
    invite = make_request()
    h.send(invite)
    h.receive(wire(make_reply(invite, 180)))
    h.advance(PROCEEDING_CAP_S + 1.0)
    assert len(of_type([o for _, o in h.log], TransactionTimeout)) == 1
    assert h.layer.client_count == 0


@pytest.mark.parametrize(("peer", "timer_d"), [(UDP, 32.0), (TCP, 0.0)])
@pytest.mark.parametrize("status", [302, 404, 486, 503, 603])
def test_invite_client_failure_is_acked_and_timer_d(
    peer: Peer, timer_d: float, status: int
) -> None:
    h = Harness()
    invite = make_request(
        transport=peer.transport,
        extra=(("Route", "<sip:edge.example.com;lr>"), ("Route", "<sip:core.example.com;lr>")),
    )
    txn = h.send(invite, peer)
    h.at(2.0)
    final = wire(make_reply(invite, status, to_tag="failtag"))
    out = h.receive(final)
    assert [type(o) for o in out] == [Transmit, ResponseReceived]
    ack_out = out[0]
    assert isinstance(ack_out, Transmit) and ack_out.peer == peer
    ack = parse_message(ack_out.data)
    assert isinstance(ack, SipRequest)
    # §17.1.1.3: same Request-URI, top Via (branch), From, Call-ID, Route; To from the
    # response (with its tag); CSeq number of the INVITE with method ACK.
    assert (ack.method, ack.uri) == ("ACK", invite.uri)
    assert ack.headers.get_all("Via") == [invite.headers.get_all("Via")[0]]
    assert ack.top_via.branch == invite.top_via.branch
    assert ack.headers.get("From") == invite.headers.get("From")
    assert NameAddr.parse(ack.headers.get("To") or "").tag == "failtag"
    assert ack.call_id == invite.call_id
    assert ack.cseq == (invite.cseq[0], "ACK")
    assert ack.headers.get_all("Route") == invite.headers.get_all("Route")
    assert state(txn) is State.COMPLETED
    assert txn.final_response is not None and txn.final_response.status == status
    # A retransmitted final gets the same ACK again and is not passed up.
    again = h.receive(wire(final))
    assert [type(o) for o in again] == [Transmit]
    assert isinstance(again[0], Transmit) and again[0].data == ack_out.data
    assert h.layer.stats.retransmissions_absorbed == 1
    # Timer D.
    assert h.layer.next_deadline() == exact(2.0 + timer_d)
    h.advance(2.0 + timer_d - 0.01)
    assert state(txn) is State.COMPLETED
    h.advance(2.0 + timer_d)
    assert state(txn) is State.TERMINATED
    assert h.layer.client_count == 0
    assert not of_type([o for _, o in h.log], TransactionTimeout)


def test_invite_client_2xx_accepted_and_timer_m() -> None:
    h = Harness()
    invite = make_request()
    txn = h.send(invite)
    h.at(0.7)
    h.receive(wire(make_reply(invite, 100)))
    h.at(3.0)
    ok = wire(make_reply(invite, 200))
    out = h.receive(ok)
    # No ACK from the transaction: the ACK for a 2xx belongs to the user (§13.2.2.4).
    assert [type(o) for o in out] == [ResponseReceived]
    assert state(txn) is State.ACCEPTED
    # RFC 6026 §7.2: retransmitted 2xx go up so the user can re-send its ACK.
    h.at(4.0)
    assert [type(o) for o in h.receive(wire(ok))] == [ResponseReceived]
    # Late provisionals and failures are ignored in Accepted.
    assert h.receive(wire(make_reply(invite, 180))) == []
    assert h.receive(wire(make_reply(invite, 486))) == []
    assert h.layer.next_deadline() == exact(3.0 + 64 * T1)
    h.advance(3.0 + 64 * T1)
    assert state(txn) is State.TERMINATED
    assert h.layer.client_count == 0
    # After timer M a 2xx no longer matches anything.
    assert h.receive(wire(ok)) == []
    assert h.layer.stats.stray_responses == 1
    assert h.transmit_times() == [0.0, 0.5]


def test_ack_cannot_be_a_transaction() -> None:
    h = Harness()
    with pytest.raises(ValueError, match="send_stateless"):
        h.send(make_request("ACK"))
    h.layer.send_stateless(make_request("ACK"), UDP)
    out = h.collect()
    assert [type(o) for o in out] == [Transmit]
    assert h.layer.client_count == 0 and h.layer.next_deadline() is None


# ---------------------------------------------------------------------- non-INVITE client


def test_non_invite_client_timer_e_caps_at_t2_until_f() -> None:
    h = Harness()
    txn = h.send(make_request("OPTIONS"))
    assert state(txn) is State.TRYING
    h.advance(100.0)
    assert h.transmit_times(0.0) == doubling(0.0, T1, T2, 64 * T1)
    assert h.transmit_times(0.0)[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert h.transmit_times(0.0)[-1] == exact(31.5)
    assert [t for t, o in h.log if isinstance(o, TransactionTimeout)] == [exact(32.0)]
    assert h.layer.client_count == 0


def test_non_invite_client_over_tcp_only_timer_f() -> None:
    h = Harness()
    h.send(make_request("BYE", transport="TCP"), TCP)
    h.advance(100.0)
    assert h.transmit_times() == [0.0]
    assert [t for t, o in h.log if isinstance(o, TransactionTimeout)] == [exact(32.0)]


def test_non_invite_client_after_provisional_retransmits_every_t2() -> None:
    h = Harness()
    bye = make_request("BYE")
    txn = h.send(bye)
    h.at(1.0)
    assert [type(o) for o in h.receive(wire(make_reply(bye, 100)))] == [ResponseReceived]
    assert state(txn) is State.PROCEEDING
    h.advance(100.0)
    # The E already scheduled (1.5) still fires; from then on it is reset to T2.
    expected = [0.5, 1.5, *[1.5 + T2 * k for k in range(1, 8)]]
    assert h.transmit_times(0.0) == [exact(t) for t in expected]
    assert [t for t, o in h.log if isinstance(o, TransactionTimeout)] == [exact(32.0)]


@pytest.mark.parametrize(("peer", "timer_k"), [(UDP, T4), (TCP, 0.0)])
def test_non_invite_client_final_and_timer_k(peer: Peer, timer_k: float) -> None:
    h = Harness()
    bye = make_request("BYE", transport=peer.transport)
    txn = h.send(bye, peer)
    h.at(0.7)
    ok = wire(make_reply(bye, 200))
    assert [type(o) for o in h.receive(ok)] == [ResponseReceived]
    assert state(txn) is State.COMPLETED
    assert h.receive(wire(ok)) == []
    assert h.layer.stats.retransmissions_absorbed == 1
    assert h.layer.next_deadline() == exact(0.7 + timer_k)
    h.advance(0.7 + timer_k)
    assert state(txn) is State.TERMINATED and h.layer.client_count == 0
    # No retransmission after the final, no timeout.
    assert h.transmit_times() == ([0.0, 0.5] if peer is UDP else [0.0])
    assert not of_type([o for _, o in h.log], TransactionTimeout)


def test_client_matching_uses_branch_and_cseq_method() -> None:
    h = Harness()
    invite = make_request(branch="z9hG4bKshared")
    cancel = make_request("CANCEL", branch="z9hG4bKshared")
    invite_txn = h.send(invite)
    cancel_txn = h.send(cancel)
    out = h.receive(wire(make_reply(cancel, 200)))
    assert [o.transaction for o in out if isinstance(o, ResponseReceived)] == [cancel_txn]
    out = h.receive(wire(make_reply(invite, 487)))
    assert [o.transaction for o in out if isinstance(o, ResponseReceived)] == [invite_txn]
    # A response whose branch matches nothing is stray.
    assert h.receive(wire(make_reply(make_request(branch="z9hG4bKother"), 200))) == []
    assert h.layer.stats.stray_responses == 1


# ---------------------------------------------------------------------- INVITE server


def test_invite_server_retransmissions_replay_last_response() -> None:
    h = Harness()
    invite = make_request()
    txn = server_txn(h.receive(invite))
    assert state(txn) is State.PROCEEDING
    # Nothing sent yet: a retransmission is absorbed silently.
    assert h.receive(make_request()) == []
    trying = h.respond(txn, make_reply(invite, 100))
    assert len(transmits(trying)) == 1
    again = h.receive(make_request())
    assert again == trying
    ringing = h.respond(txn, make_reply(invite, 180))
    assert h.receive(make_request()) == ringing
    assert state(txn) is State.PROCEEDING
    assert h.layer.stats.retransmissions_absorbed == 3
    assert sum(isinstance(o, RequestReceived) for _, o in h.log) == 1
    # Provisionals are never retransmitted by the layer.
    assert h.layer.next_deadline() is None


def test_invite_server_failure_timer_g_then_h() -> None:
    h = Harness()
    invite = make_request()
    txn = server_txn(h.receive(invite))
    h.at(2.0)
    busy = h.respond(txn, make_reply(invite, 486))
    assert state(txn) is State.COMPLETED
    h.advance(100.0)
    assert h.transmit_times(2.0) == [exact(t) for t in doubling(2.0, T1, T2, 2.0 + 64 * T1)]
    assert h.transmit_times(2.0)[:5] == [2.5, 3.5, 5.5, 9.5, 13.5]
    assert {o.data for _, o in h.log if isinstance(o, Transmit)} == {transmits(busy)[0].data}
    assert [(t, o) for t, o in h.log if isinstance(o, TransactionTimeout)] == [
        (exact(2.0 + 64 * T1), TransactionTimeout(txn))
    ]
    assert state(txn) is State.TERMINATED and h.layer.server_count == 0


def test_invite_server_retransmission_in_completed_gets_the_final() -> None:
    h = Harness()
    invite = make_request()
    txn = server_txn(h.receive(invite))
    busy = h.respond(txn, make_reply(invite, 486))
    h.at(0.2)
    assert h.receive(make_request()) == busy


@pytest.mark.parametrize(("peer", "timer_i"), [(UDP, T4), (TCP, 0.0)])
def test_invite_server_ack_confirms_and_timer_i(peer: Peer, timer_i: float) -> None:
    h = Harness()
    invite = make_request(transport=peer.transport)
    txn = server_txn(h.receive(invite, peer))
    h.respond(txn, make_reply(invite, 603))
    h.at(0.7)
    ack = make_request("ACK", transport=peer.transport, to_tag="totag")
    assert h.receive(ack, peer) == []  # the ACK for a failure is not passed up
    assert state(txn) is State.CONFIRMED
    assert h.receive(make_request("ACK", transport=peer.transport), peer) == []
    assert h.layer.next_deadline() == exact(0.7 + timer_i)
    h.advance(100.0)
    assert state(txn) is State.TERMINATED and h.layer.server_count == 0
    assert h.transmit_times() == ([0.0, 0.5] if peer is UDP else [0.0])
    assert not of_type([o for _, o in h.log], TransactionTimeout)


def test_invite_server_failure_over_tcp_no_g_but_h() -> None:
    h = Harness()
    invite = make_request(transport="TCP")
    txn = server_txn(h.receive(invite, TCP))
    h.respond(txn, make_reply(invite, 480))
    h.advance(100.0)
    assert h.transmit_times() == [0.0]
    assert [t for t, o in h.log if isinstance(o, TransactionTimeout)] == [exact(32.0)]


@pytest.mark.parametrize("peer", [UDP, TCP])
def test_invite_server_2xx_retransmitted_until_ack(peer: Peer) -> None:
    h = Harness()
    invite = make_request(transport=peer.transport)
    txn = server_txn(h.receive(invite, peer))
    h.at(1.0)
    ok = h.respond(txn, make_reply(invite, 200))
    assert state(txn) is State.ACCEPTED
    h.advance(10.0)
    # §13.3.1.4: T1 doubling to T2, whatever the transport.
    assert h.transmit_times(1.0) == [1.5, 2.5, 4.5, 8.5]
    # An INVITE retransmission in Accepted is absorbed but gets the 2xx again.
    assert h.receive(make_request(transport=peer.transport), peer) == ok
    ack = ack_for_2xx(invite)
    out = h.receive(ack, peer)
    assert [type(o) for o in out] == [RequestReceived]
    assert isinstance(out[0], RequestReceived) and out[0].transaction is None
    assert out[0].request.method == "ACK"
    h.advance(1.0 + 64 * T1 - 0.01)
    assert h.transmit_times(9.99) == [10.0]  # only the reply to the retransmitted INVITE
    assert state(txn) is State.ACCEPTED
    h.advance(1.0 + 64 * T1)  # timer L
    assert state(txn) is State.TERMINATED and h.layer.server_count == 0
    assert not of_type([o for _, o in h.log], AckTimeout)
    assert h.layer.stats.stray_acks == 0
    # A late ACK retransmission matches nothing, is counted, and still goes up.
    late = h.receive(ack, peer)
    assert [type(o) for o in late] == [RequestReceived]
    assert h.layer.stats.stray_acks == 1


@pytest.mark.parametrize("peer", [UDP, TCP])
def test_invite_server_2xx_without_ack_times_out(peer: Peer) -> None:
    h = Harness()
    invite = make_request(transport=peer.transport)
    txn = server_txn(h.receive(invite, peer))
    h.respond(txn, make_reply(invite, 200))
    h.advance(100.0)
    assert h.transmit_times(0.0) == [exact(t) for t in doubling(0.0, T1, T2, 64 * T1)]
    assert [(t, o) for t, o in h.log if isinstance(o, AckTimeout)] == [
        (exact(64 * T1), AckTimeout(txn))
    ]
    assert state(txn) is State.TERMINATED and h.layer.server_count == 0
    assert h.layer.next_deadline() is None


def test_ack_reusing_the_invite_branch_in_accepted_reaches_the_user() -> None:
    # RFC 2543 peers (no magic cookie) match the 2xx's ACK to the INVITE transaction.
    h = Harness()
    invite = make_request(branch="oldstyle1")
    txn = server_txn(h.receive(invite))
    h.respond(txn, make_reply(invite, 200))
    h.at(0.7)
    out = h.receive(make_request("ACK", branch="oldstyle1", to_tag="totag"))
    assert [type(o) for o in out] == [RequestReceived]
    assert isinstance(out[0], RequestReceived) and out[0].transaction is None
    h.advance(100.0)
    assert h.transmit_times(0.0) == [0.5]
    assert not of_type([o for _, o in h.log], AckTimeout)
    assert h.layer.server_count == 0


def test_ack_for_another_cseq_does_not_stop_2xx() -> None:
    h = Harness()
    invite = make_request(cseq=5)
    txn = server_txn(h.receive(invite))
    h.respond(txn, make_reply(invite, 200))
    h.receive(make_request("ACK", branch="z9hG4bKx", cseq=4))
    assert h.layer.stats.stray_acks == 1
    h.advance(100.0)
    assert of_type([o for _, o in h.log], AckTimeout) == [AckTimeout(txn)]


def test_only_one_final_response_is_sent() -> None:
    h = Harness()
    invite = make_request()
    txn = server_txn(h.receive(invite))
    h.respond(txn, make_reply(invite, 486))
    assert h.respond(txn, make_reply(invite, 200)) == []
    assert h.respond(txn, make_reply(invite, 180)) == []
    assert txn.last_response is not None and txn.last_response.status == 486


# ---------------------------------------------------------------------- non-INVITE server


@pytest.mark.parametrize(("peer", "timer_j"), [(UDP, 64 * T1), (TCP, 0.0)])
def test_non_invite_server(peer: Peer, timer_j: float) -> None:
    h = Harness()
    options = make_request("OPTIONS", transport=peer.transport)
    txn = server_txn(h.receive(options, peer))
    assert state(txn) is State.TRYING
    assert h.receive(make_request("OPTIONS", transport=peer.transport), peer) == []
    trying = h.respond(txn, make_reply(options, 100))
    assert state(txn) is State.PROCEEDING
    assert h.receive(make_request("OPTIONS", transport=peer.transport), peer) == trying
    h.at(3.0)
    ok = h.respond(txn, make_reply(options, 200))
    assert state(txn) is State.COMPLETED
    assert h.layer.next_deadline() == exact(3.0 + timer_j)
    if timer_j:
        h.at(10.0)
        assert h.receive(make_request("OPTIONS"), peer) == ok
    assert h.respond(txn, make_reply(options, 500)) == []
    h.advance(3.0 + timer_j)
    assert state(txn) is State.TERMINATED and h.layer.server_count == 0
    assert sum(isinstance(o, RequestReceived) for _, o in h.log) == 1
    # Final responses to non-INVITE requests are never retransmitted by timers.
    assert h.transmit_times() == ([0.0, 0.0, 3.0, 10.0] if timer_j else [0.0, 0.0, 3.0])


def test_non_invite_final_without_provisional() -> None:
    h = Harness()
    bye = make_request("BYE")
    txn = server_txn(h.receive(bye))
    h.respond(txn, make_reply(bye, 200))
    assert state(txn) is State.COMPLETED
    h.advance(32.0)
    assert h.layer.server_count == 0


# ---------------------------------------------------------------------- matching, CANCEL


def test_cancel_matches_its_invite() -> None:
    h = Harness()
    invite = make_request(branch="z9hG4bKinv")
    invite_txn = server_txn(h.receive(invite))
    cancel = make_request("CANCEL", branch="z9hG4bKinv")
    cancel_txn = server_txn(h.receive(cancel))
    assert cancel_txn is not invite_txn
    assert h.layer.find_invite(cancel) is invite_txn
    assert h.layer.find_invite(make_request("CANCEL", branch="z9hG4bKnone")) is None
    # Same branch from another sent-by is another transaction (§17.2.3).
    elsewhere = make_request("CANCEL", branch="z9hG4bKinv", via="192.0.2.77:5060")
    assert h.layer.find_invite(elsewhere) is None


def test_rfc2543_cancel_matches_without_magic_cookie() -> None:
    h = Harness()
    invite_txn = server_txn(h.receive(make_request(branch="1")))
    assert h.layer.find_invite(make_request("CANCEL", branch="1")) is invite_txn


def test_same_branch_different_method_or_sent_by_are_distinct() -> None:
    h = Harness()
    first = server_txn(h.receive(make_request("OPTIONS", branch="z9hG4bKsame")))
    second = server_txn(h.receive(make_request("INFO", branch="z9hG4bKsame", cseq=2)))
    third = server_txn(h.receive(make_request("OPTIONS", branch="z9hG4bKsame", via="h2:5060")))
    assert len({id(first), id(second), id(third)}) == 3
    assert h.layer.server_count == 3


def test_stray_ack_is_counted_and_passed_up() -> None:
    h = Harness()
    out = h.receive(make_request("ACK", branch="z9hG4bKlost"))
    assert [type(o) for o in out] == [RequestReceived]
    assert h.layer.stats.stray_acks == 1
    assert h.layer.server_count == 0


def test_ack_before_any_final_is_absorbed() -> None:
    h = Harness()
    txn = server_txn(h.receive(make_request()))
    assert h.receive(make_request("ACK")) == []
    assert state(txn) is State.PROCEEDING


# ---------------------------------------------------------------------- Via stamping, routing


def test_received_added_when_sent_by_differs() -> None:
    h = Harness()
    source = Peer("UDP", "203.0.113.5", 5060)
    txn = server_txn(h.receive(make_request(via="192.168.1.20:5060"), source))
    via = txn.request.top_via
    assert via.params["received"] == "203.0.113.5"
    assert "rport" not in via.params
    # §18.2.2: to the received address, at the sent-by port.
    assert response_peer(txn.request, source) == Peer("UDP", "203.0.113.5", 5060)
    out = h.respond(txn, make_reply(txn.request, 200))
    sent = transmits(out)[0]
    assert sent.peer == Peer("UDP", "203.0.113.5", 5060)
    echoed = parse_message(sent.data)
    assert Via.parse(echoed.headers.get_all("Via")[0]).params["received"] == "203.0.113.5"


def test_received_not_added_when_sent_by_matches() -> None:
    h = Harness()
    txn = server_txn(h.receive(make_request(via="192.0.2.10:5080")))
    assert "received" not in txn.request.top_via.params
    assert response_peer(txn.request, UDP) == Peer("UDP", "192.0.2.10", 5080)


def test_domain_sent_by_gets_received_and_default_port() -> None:
    h = Harness()
    txn = server_txn(h.receive(make_request(via="pbx.example.com")))
    assert txn.request.top_via.params["received"] == "192.0.2.10"
    assert response_peer(txn.request, UDP) == Peer("UDP", "192.0.2.10", 5060)


def test_rport_symmetric_response_routing() -> None:
    h = Harness()
    nat = Peer("UDP", "203.0.113.5", 61000)
    invite = make_request(via="10.0.0.5:5060", via_params=";rport")
    txn = server_txn(h.receive(invite, nat))
    via = txn.request.top_via
    assert via.params["rport"] == "61000"
    assert via.params["received"] == "203.0.113.5"
    assert response_peer(txn.request, nat) == nat
    assert transmits(h.respond(txn, make_reply(txn.request, 180)))[0].peer == nat


def test_rport_adds_received_even_when_host_matches() -> None:
    h = Harness()
    source = Peer("UDP", "192.0.2.10", 5062)
    txn = server_txn(h.receive(make_request(via="192.0.2.10:5060", via_params=";rport"), source))
    assert txn.request.top_via.params == {
        "branch": "z9hG4bKbranch1",
        "rport": "5062",
        "received": "192.0.2.10",
    }
    assert response_peer(txn.request, source) == source


def test_stamping_keeps_the_other_vias_in_order() -> None:
    h = Harness()
    req = make_request(
        via="proxy.example.com",
        extra=(("Via", "SIP/2.0/UDP uac.example.com;branch=z9hG4bKuac"),),
    )
    txn = server_txn(h.receive(req))
    vias = [Via.parse(v) for v in txn.request.headers.get_all("Via")]
    assert [v.host for v in vias] == ["proxy.example.com", "uac.example.com"]
    assert "received" in vias[0].params and "received" not in vias[1].params


def test_reliable_responses_go_back_on_the_connection() -> None:
    h = Harness()
    txn = server_txn(h.receive(make_request(via="10.0.0.5:5060", transport="TCP"), TCP))
    assert response_peer(txn.request, TCP) == TCP


def test_new_branch_is_rfc3261_and_unique() -> None:
    branches = {new_branch() for _ in range(200)}
    assert len(branches) == 200
    assert all(b.startswith("z9hG4bK") for b in branches)


# ---------------------------------------------------------------------- property


_SERVER_BRANCHES = ["z9hG4bKs0", "z9hG4bKs1", "z9hG4bKs2", "noCookie3"]
_SERVER_METHODS = ["INVITE", "INVITE", "OPTIONS", "INVITE"]
_CLIENT_METHODS = ["INVITE", "BYE", "INVITE"]

#: (what happens, which transaction, an argument: status index, flag or tenths of a second)
_OPS = st.tuples(
    st.sampled_from(["request", "respond", "ack", "cancel", "advance", "send", "reply"]),
    st.integers(0, 3),
    st.integers(0, 120),
)
_SERVER_STATUSES = [100, 180, 200, 486]
_CLIENT_STATUSES = [100, 180, 200, 404]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_OPS, max_size=40), reliable=st.booleans())
def test_random_interleavings(ops: list[tuple[str, int, int]], reliable: bool) -> None:
    peer = TCP if reliable else UDP
    h = Harness()
    servers: dict[int, ServerTransaction] = {}
    clients: dict[int, ClientTransaction] = {}
    cancels: list[ServerTransaction] = []

    def inbound(index: int, method: str | None = None, branch: str | None = None) -> SipRequest:
        return make_request(
            method or _SERVER_METHODS[index],
            branch=branch or _SERVER_BRANCHES[index],
            cseq=10 + index,
            call_id=f"srv-{index}",
            transport=peer.transport,
            to_tag="totag" if method == "ACK" else None,
        )

    def deliver(message: SipRequest | SipResponse) -> None:
        for out in h.receive(message, peer):
            if isinstance(out, RequestReceived) and out.transaction is not None:
                txn = out.transaction
                if txn.request.method == "CANCEL":
                    cancels.append(txn)
                    continue
                index = _SERVER_BRANCHES.index(txn.request.top_via.branch or "")
                previous = servers.get(index)
                # Never two live transactions for one branch.
                assert previous is None or state(previous) is State.TERMINATED
                servers[index] = txn

    for kind, index, arg in ops:
        if kind == "request":
            deliver(inbound(index))
        elif kind == "respond" and index in servers:
            txn = servers[index]
            h.respond(txn, make_reply(txn.request, _SERVER_STATUSES[arg % 4]))
        elif kind == "ack":
            # Half the ACKs reuse the INVITE branch (failure ACKs), half are 2xx-style.
            deliver(inbound(index, "ACK", None if arg % 2 else new_branch()))
        elif kind == "cancel":
            deliver(inbound(index, "CANCEL"))
        elif kind == "advance":
            h.advance(h.now + arg / 10)
        elif kind == "send" and index < 3 and index not in clients:
            request = make_request(
                _CLIENT_METHODS[index], branch=f"z9hG4bKc{index}", transport=peer.transport
            )
            clients[index] = h.send(request, peer)
        elif kind == "reply" and index in clients:
            status = _CLIENT_STATUSES[arg % 4]
            h.receive(wire(make_reply(clients[index].request, status)), peer)

    # The user finally answers everything still open, the far end answers everything we
    # sent, and enough time passes: every transaction must be gone, no timer left.
    for txn in [*servers.values(), *cancels]:
        h.respond(txn, make_reply(txn.request, 487 if txn.is_invite else 200))
    for client in clients.values():
        h.receive(wire(make_reply(client.request, 500)), peer)
    steps = 0
    while h.layer.next_deadline() is not None:
        h.advance(h.now + 1000.0)
        steps += 1
        assert steps < 10
    assert h.layer.server_count == 0
    assert h.layer.client_count == 0
    for index, txn in servers.items():
        finals = [
            o
            for _, o in h.log
            if isinstance(o, TransactionTimeout | AckTimeout) and o.transaction is txn
        ]
        assert len(finals) <= 1, f"server {index} timed out twice"
