"""A browser call's record, read back over `/calls` (behind the token) and `calls show`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from telephony_agent.cli import main
from telephony_agent.records import open_reader, open_store
from telephony_agent.server.calls_api import CallsReader
from telephony_agent.server.http_app import HttpServer
from tests.http.support import OFFER, FakeLegFactory, spoken_turn, wait_until
from tests.switchboard.support import Rig, running_rig

TOKEN = "records-token-0123456789"


@asynccontextmanager
async def http_for(rig: Rig, tmp_path: Path, token: str | None) -> AsyncIterator[str]:
    reader = CallsReader(open_reader(f"sqlite:///{tmp_path / 'data' / 'calls.db'}"))
    factory = FakeLegFactory(caller=spoken_turn())
    http = HttpServer(
        rig.board, sip=rig.sip, leg_factory=factory, environ={}, token=token, calls_reader=reader
    )
    await http.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{http.port}"
    finally:
        await http.close()


async def test_a_browser_call_is_kept_and_served_over_http(tmp_path: Path) -> None:
    async with (
        running_rig(tmp_path, "", keep=True, local={"behaviour": "echo"}) as rig,
        http_for(rig, tmp_path, TOKEN) as base,
        aiohttp.ClientSession(base_url=base) as client,
    ):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with client.post(
            "/webrtc/offer", json={"sdp": OFFER, "type": "offer"}, headers=auth
        ) as r:
            assert r.status == 200
            browser_id = (await r.json())["call_id"]
        await wait_until(lambda: len(rig.heard.started) == 1)
        await asyncio.sleep(1.5)
        async with client.delete(f"/webrtc/calls/{browser_id}", headers=auth) as r:
            assert r.status == 200
        await wait_until(lambda: len(rig.heard.ended) == 1)
        await rig.flushed()
        async with client.get("/calls") as r:
            assert r.status == 401
        async with client.get("/calls?limit=5", headers=auth) as r:
            assert r.status == 200
            (listed,) = await r.json()
        async with client.get(f"/calls/{listed['id']}", headers=auth) as r:
            assert r.status == 200
            call = await r.json()
        async with client.get(f"/calls/{browser_id}", headers=auth) as r:
            assert r.status == 200 and (await r.json())["id"] == call["id"]
        async with client.get(f"/calls/{call['id']}/recording", headers=auth) as r:
            assert r.status == 404
        async with client.get("/calls/not-a-call", headers=auth) as r:
            assert r.status == 404
        async with client.get("/calls?limit=0", headers=auth) as r:
            assert r.status == 400
        # The records' own refusal (an unknown paging cursor) is a 400, not a 500.
        async with client.get("/calls?before=no-such-call", headers=auth) as r:
            assert r.status == 400
            assert "no-such-call" in (await r.json())["error"]
    assert (call["kind"], call["sip_call_id"], call["codec"]) == ("webrtc", browser_id, "opus")
    assert call["ended_by"] == "caller" and call["answered_at"]
    assert any(line["speaker"] == "caller" for line in call["transcript"])


async def test_without_a_token_records_stay_on_this_machine(tmp_path: Path) -> None:
    async with (
        running_rig(tmp_path, "", keep=True, local={"behaviour": "echo"}) as rig,
        http_for(rig, tmp_path, None) as base,
        aiohttp.ClientSession(base_url=base) as client,
        client.get("/calls") as r,
    ):
        assert r.status == 200 and await r.json() == []


def test_calls_commands_say_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "agent.toml"
    settings.write_text(f'[records]\ndata_dir = "{tmp_path / "data"}"\n')
    assert main(["calls", "list", "--config", str(settings)]) == 2
    assert "no call has been recorded there" in capsys.readouterr().err
    open_store(f"sqlite:///{tmp_path / 'data' / 'calls.db'}").close()
    assert main(["calls", "list", "--config", str(settings)]) == 0
    assert capsys.readouterr().out.strip() == "no calls recorded yet"
    assert main(["calls", "show", "nope", "--config", str(settings)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "telephony-agent: error: no call 'nope' in the records", err
