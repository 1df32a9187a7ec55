"""One synthetic caller's SIP dialog, sans-I/O: INVITE, ACK, BYE and what comes back.

Why not the project's own UAC (`caller/`, `sip/endpoint.py`): a bench process holds
hundreds of calls, and each of those brings transactions, timers and tasks; the load
generator must stay far cheaper than what it loads. This speaks just enough RFC 3261 for
a UAS on loopback (retransmissions come from the shell, on a timer per call), and uses
the project's parser and SDP offer/answer so what it sends is checked the same way.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from telephony_agent.sip.message import NameAddr, SipRequest, SipResponse
from telephony_agent.sip.sdp import SdpError, accept_answer, build_offer, parse_sdp

State = Literal["calling", "answered", "refused", "ended"]


@dataclass(frozen=True)
class Media:
    """Where to send RTP and with which payload type, from the agreed SDP."""

    remote: tuple[str, int]
    payload_type: int


class CallerDialog:
    """The signalling of one bench call from our side (the UAC)."""

    def __init__(
        self,
        *,
        user: str,
        target: tuple[str, int],
        local_sip: tuple[str, int],
        rtp_port: int,
        codec_name: str,
    ) -> None:
        self.user = user
        self.target = target
        self.local_sip = local_sip
        self.call_id = f"{secrets.token_hex(8)}@bench"
        self.state: State = "calling"
        self.status: int | None = None
        """The final response's status (200, or why the call was refused)."""
        self.provisional = False
        self.media: Media | None = None
        self._tag = secrets.token_hex(4)
        self._branch = _branch()
        self._to = f"<sip:agent@{target[0]}:{target[1]}>"
        self._remote_tag: str | None = None
        self._remote_target = f"sip:agent@{target[0]}:{target[1]}"
        self._offer = build_offer(
            local_address=local_sip[0],
            local_port=rtp_port,
            codecs=[codec_name],
            session_id=int.from_bytes(secrets.token_bytes(4), "big"),
            session_version=1,
            telephone_event=False,
        )

    def invite(self) -> bytes:
        """The INVITE (the same bytes on every retransmission, as RFC 3261 wants)."""
        request = self._request("INVITE", self._remote_target, 1, self._branch, self._to)
        request.headers.add("Contact", f"<sip:{self.user}@{self._hostport}>")
        request.headers.add("Content-Type", "application/sdp")
        request.body = self._offer.to_bytes()
        return request.to_bytes()

    def on_response(self, response: SipResponse) -> list[bytes]:
        """Take a response to our INVITE or BYE; returns what to send (ACKs)."""
        number, method = response.cseq
        if method == "BYE":
            if response.status >= 200:
                self.state = "ended"
            return []
        if method != "INVITE" or number != 1:
            return []
        if response.status < 200:
            self.provisional = True
            return []
        to = response.headers.get("To") or self._to
        self._remote_tag = NameAddr.parse(to).tag
        if response.status >= 300:
            # A final refusal is ACKed inside the INVITE transaction (same branch).
            if self.state == "calling":
                self.state, self.status = "refused", response.status
            return [self._request("ACK", self._remote_target, 1, self._branch, to).to_bytes()]
        contact = response.headers.get("Contact")
        if contact:
            self._remote_target = NameAddr.parse(contact).uri
        if self.state == "calling":
            self.status = response.status
            try:
                agreed = accept_answer(self._offer, parse_sdp(response.body))
            except SdpError:
                self.state = "refused"
                return [self._ack(to), self.bye()]
            self.media = Media(agreed.remote_rtp, agreed.payload_type)
            self.state = "answered"
        # Every 2xx (and each retransmission of it) gets its own ACK.
        return [self._ack(to)]

    def bye(self) -> bytes:
        to = self._to if self._remote_tag is None else f"{self._to};tag={self._remote_tag}"
        return self._request("BYE", self._remote_target, 2, _branch(), to).to_bytes()

    def answer(self, request: SipRequest) -> bytes:
        """200 OK to whatever the agent sends in the dialog (BYE, re-INVITE keeps media)."""
        if request.method == "BYE":
            self.state = "ended"
        response = SipResponse(200, "OK")
        for via in request.headers.get_all("Via"):
            response.headers.add("Via", via)
        for name in ("From", "To", "Call-ID", "CSeq"):
            response.headers.add(name, request.headers.get(name) or "")
        if request.method == "INVITE":
            response.headers.add("Contact", f"<sip:{self.user}@{self._hostport}>")
            response.headers.add("Content-Type", "application/sdp")
            response.body = self._offer.to_bytes()
        return response.to_bytes()

    @property
    def _hostport(self) -> str:
        return f"{self.local_sip[0]}:{self.local_sip[1]}"

    def _ack(self, to: str) -> bytes:
        return self._request("ACK", self._remote_target, 1, _branch(), to).to_bytes()

    def _request(self, method: str, uri: str, cseq: int, branch: str, to: str) -> SipRequest:
        request = SipRequest(method, uri)
        headers = request.headers
        headers.add("Via", f"SIP/2.0/UDP {self._hostport};branch={branch};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{self.user}@{self.local_sip[0]}>;tag={self._tag}")
        headers.add("To", to)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        headers.add("User-Agent", "telephony-agent-bench")
        return request


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)
