"""An overloaded server answers INVITEs at once with its final word, and says so to
dispatchers: no 100 Trying left hanging, no RTP port or model session taken."""

from __future__ import annotations

import pytest

from telephony_agent.server.dialing import DialError, DialRequest
from telephony_agent.switchboard.overload import LoadSample

from .conftest import ServerFactory
from .raw_sip import RawSip, request, sdp_offer

_OVERLOADED = LoadSample(at=0.0, lateness_p99_ms=9.0, cpu=0.97, calls=0)


@pytest.mark.parametrize(
    ("refuse_with", "retry_after"), [(503, "7"), (486, None)], ids=["503", "486"]
)
async def test_an_overloaded_server_refuses_with_one_final_response(
    sip_server: ServerFactory, refuse_with: int, retry_after: str | None
) -> None:
    async with sip_server(
        admission={"refuse_with": refuse_with, "retry_after_s": 7, "enter_after_s": 0}
    ) as server:
        board = server.switchboard
        board.overload.observe(_OVERLOADED)
        ports_used = server.ports.in_use
        raw = await RawSip.open(server.sip_port)
        try:
            branch, call_id = "z9hG4bK-overload", "overload-1"
            invite = request(
                "INVITE",
                server.sip_port,
                raw.port,
                branch=branch,
                call_id=call_id,
                body=sdp_offer(40300),
            )
            raw.send(invite)
            first = await raw.response()
            assert first.status == refuse_with, "the final answer comes first, no 100 Trying"
            assert first.headers.get("Retry-After") == retry_after
            to_tag = (first.headers.get("To") or "").partition(";tag=")[2]
            raw.send(
                request(
                    "ACK",
                    server.sip_port,
                    raw.port,
                    branch=branch,
                    call_id=call_id,
                    to_tag=to_tag,
                )
            )
            assert await raw.silence(0.3) == [], "nothing but the final response, ACKed"
            assert server.ports.in_use == ports_used == 0
            assert board.active_calls == 0 and board.stats.refused_overloaded == 1
            assert server.stats.rejected_busy == 1

            # A dispatcher's probe takes the instance out until the load falls.
            raw.send(request("OPTIONS", server.sip_port, raw.port))
            assert (await raw.response()).status == 503
            for t in (1.0, 2.0, 3.0, 4.0):
                board.overload.observe(LoadSample(at=t, lateness_p99_ms=0.5, cpu=0.1, calls=0))
            raw.send(request("OPTIONS", server.sip_port, raw.port))
            assert (await raw.response()).status == 200
        finally:
            raw.close()


async def test_an_outbound_call_is_refused_with_a_clear_error_while_overloaded(
    sip_server: ServerFactory,
) -> None:
    async with sip_server(admission={"enter_after_s": 0}) as server:
        server.switchboard.overload.observe(_OVERLOADED)
        with pytest.raises(DialError) as caught:
            server.place_call(DialRequest(to="sip:bob@127.0.0.1:9"))
        assert caught.value.status == 503
        assert str(caught.value) == "the server is overloaded; try again later"
        assert server.stats.outbound == 0 and server.switchboard.active_calls == 0
