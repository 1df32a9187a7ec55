"""Dialogs (RFC 3261 §12) and the response/request builders both sides of a call use.

Why separate from transactions: a transaction lives for one request; a dialog
lives for the whole call and owns what every later request must repeat — the
tags, the Call-ID, our CSeq counter, the remote target (Contact) and the route
set learned from Record-Route. Getting any of these wrong makes the far end
answer 481, so they are computed in exactly one place. Pure data, no I/O.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from telephony_agent.sip.message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
)
from telephony_agent.sip.transaction import Peer, new_branch

__all__ = ["Dialog", "DialogError", "make_response", "new_tag", "peer_for_uri"]

ALLOWED_METHODS = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY"

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    513: "Message Too Large",
}


class DialogError(ValueError):
    """An in-dialog request that does not fit the dialog (e.g. a CSeq going backwards)."""


def new_tag() -> str:
    return secrets.token_hex(6)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Headers | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """§8.2.6: a response copies Via, From, To, Call-ID and CSeq from its request.

    §8.2.6.2: every response but 100 carries a To tag. A request without one gets
    `to_tag` (the dialog's, so all responses of one call agree) or a fresh tag.
    """
    out = Headers()
    for via in request.headers.get_all("Via"):
        out.add("Via", via)
    from_value = request.headers.get("From") or ""
    to_value = request.headers.get("To") or ""
    if status != 100:
        to_value = _with_tag(to_value, to_tag)
    out.add("From", from_value)
    out.add("To", to_value)
    out.add("Call-ID", request.call_id)
    out.add("CSeq", request.headers.get("CSeq") or "")
    # §12.1.1: a response that establishes a dialog carries the request's Record-Route,
    # and a 101-199 with a To tag establishes an early one (§12.1), not only a 2xx.
    if 200 <= status < 300 or (100 < status < 200 and _has_tag(to_value)):
        for rr in request.headers.get_all("Record-Route"):
            out.add("Record-Route", rr)
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        out.add("Timestamp", timestamp)  # §8.2.6.1
    for name, value in headers or Headers():
        out.add(name, value)
    if body and content_type:
        out.set("Content-Type", content_type)
    return SipResponse(status, reason or REASONS.get(status, "Unknown"), out, body)


def _with_tag(address: str, tag: str | None) -> str:
    """`address` with a tag added if it has none (a To the parser refused stays as is)."""
    try:
        parsed = NameAddr.parse(address)
    except SipParseError:
        return address
    if parsed.tag is not None:
        return address
    return str(parsed.with_tag(tag or new_tag()))


def _has_tag(address: str) -> bool:
    try:
        return NameAddr.parse(address).tag is not None
    except SipParseError:
        return False


def peer_for_uri(uri: str, transport: str = "UDP") -> Peer:
    """Where to send a request for `uri` when there is no outbound proxy (no DNS SRV)."""
    parsed = SipUri.parse(uri)
    default = "TLS" if parsed.scheme == "sips" else transport
    transport = (parsed.params.get("transport") or default).upper()
    return Peer(transport, parsed.host, parsed.port or (5061 if transport == "TLS" else 5060))


@dataclass
class Dialog:
    """One side's view of an established (or early) dialog."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    remote_target: str
    local_contact: str
    local_seq: int
    remote_seq: int | None = None
    route_set: list[str] = field(default_factory=list)
    transport: str = "UDP"
    secure: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag or "")

    # ------------------------------------------------------------------ creation

    @classmethod
    def for_uas(
        cls, invite: SipRequest, local_tag: str, local_contact: str, transport: str
    ) -> Dialog:
        """§12.1.1: the dialog a 2xx to `invite` creates on the answering side."""
        from_addr = NameAddr.parse(invite.headers.get("From") or "")
        to_addr = NameAddr.parse(invite.headers.get("To") or "")
        contacts = invite.headers.get_all("Contact")
        target = NameAddr.parse(contacts[0]).uri if contacts else from_addr.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=from_addr.tag,
            local_uri=to_addr.uri,
            remote_uri=from_addr.uri,
            remote_target=target,
            local_contact=local_contact,
            local_seq=secrets.randbelow(2**16) + 1,
            remote_seq=invite.cseq[0],
            route_set=invite.headers.get_all("Record-Route"),
            transport=transport,
            # §26.2.1: a sips: Request-URI asks for security end to end.
            secure=invite.uri.lower().startswith("sips:"),
        )

    @classmethod
    def for_uac(cls, invite: SipRequest, response: SipResponse, transport: str) -> Dialog:
        """§12.1.2: the dialog a 2xx (or 1xx with a tag) to our INVITE creates."""
        from_addr = NameAddr.parse(invite.headers.get("From") or "")
        to_addr = NameAddr.parse(response.headers.get("To") or "")
        contacts = response.headers.get_all("Contact")
        target = NameAddr.parse(contacts[0]).uri if contacts else invite.uri
        our_contact = invite.headers.get_all("Contact")
        return cls(
            call_id=invite.call_id,
            local_tag=from_addr.tag or "",
            remote_tag=to_addr.tag,
            local_uri=from_addr.uri,
            remote_uri=to_addr.uri,
            remote_target=target,
            local_contact=NameAddr.parse(our_contact[0]).uri if our_contact else from_addr.uri,
            local_seq=invite.cseq[0],
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            transport=transport,
        )

    # ------------------------------------------------------------------ requests

    def check_remote_cseq(self, request: SipRequest) -> None:
        """§12.2.2: a lower CSeq than the last one is out of order (500)."""
        seq = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return
        if self.remote_seq is not None and seq < self.remote_seq:
            raise DialogError(f"CSeq {seq} lower than {self.remote_seq}")
        self.remote_seq = seq

    def next_hop_uri(self) -> str:
        """Where an in-dialog request physically goes: first route, else the target."""
        if self.route_set:
            first = NameAddr.parse(self.route_set[0])
            if "lr" in SipUri.parse(first.uri).params:
                return first.uri
            return first.uri
        return self.remote_target

    def create_request(
        self,
        method: str,
        via_host: str,
        via_port: int,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Headers | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        """§12.2.1.1: an in-dialog request (BYE, re-INVITE, REFER, INFO...)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers = Headers()
        headers.add(
            "Via",
            str(Via(self.transport, via_host, via_port, {"branch": new_branch(), "rport": None})),
        )
        headers.add("Max-Forwards", "70")
        local = NameAddr(self.local_uri, None, {"tag": self.local_tag})
        remote_params: dict[str, str | None] = {"tag": self.remote_tag} if self.remote_tag else {}
        headers.add("From", str(local))
        headers.add("To", str(NameAddr(self.remote_uri, None, remote_params)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and "lr" not in SipUri.parse(NameAddr.parse(routes[0]).uri).params:
            # Strict router (RFC 2543): its URI becomes the Request-URI.
            uri = NameAddr.parse(routes[0]).uri
            routes = [*routes[1:], f"<{self.remote_target}>"]
        for route in routes:
            headers.add("Route", route)
        if method in ("INVITE", "UPDATE", "REFER", "SUBSCRIBE", "NOTIFY"):
            headers.add("Contact", f"<{self.local_contact}>")
        for name, value in extra or Headers():
            headers.add(name, value)
        if body and content_type:
            headers.add("Content-Type", content_type)
        return SipRequest(method, uri, headers, body)

    def create_ack(self, invite_cseq: int, via_host: str, via_port: int) -> SipRequest:
        """§13.2.2.4: the ACK for a 2xx uses the INVITE's CSeq number and a new branch."""
        return self.create_request("ACK", via_host, via_port, cseq=invite_cseq)
