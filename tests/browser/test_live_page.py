"""The live calls page in headless Chromium while a real SIP call is on the line.

`serve` runs as a real process (records kept, a bearer token required), SIPp places a
call that speaks and then waits to be hung up, and Chromium opens `/live` with the
token: the call must appear with its caller, profile, codec and live transcript, a
screenshot is kept under the test's folder, the Hang up button must end the call
(SIPp answers the BYE), and the ended call must link to its record, which the page
fetches with the token.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from telephony_agent.audio.g711 import ulaw_encode
from telephony_agent.media.audiofile import decode_audio_file
from tests.peers.agent_process import AgentServer, start_agent
from tests.peers.lifecycle_support import finish, start_sipp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "telephony_agent" / "samples" / "book_flight.wav"
TOKEN = "live-page-token-0123456789"


def _ulaw(path: Path) -> Path:
    path.write_bytes(ulaw_encode(decode_audio_file(SAMPLE, 8000)).tobytes())
    return path


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentServer]:
    monkeypatch.setenv("LIVE_PAGE_TOKEN", TOKEN)
    server = start_agent(
        tmp_path / "agent",
        {"http": {"token_env": "LIVE_PAGE_TOKEN"}, "records": {"enabled": True}},
    )
    yield server
    code = server.stop()
    if code != 0:
        print(server.log_tail())


async def test_the_live_page_shows_a_call_as_it_happens_and_hangs_it_up(
    agent: AgentServer, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    caller = start_sipp(
        f"127.0.0.1:{agent.sip_port}",
        "talk_until_bye.xml",
        tmp_path / "sipp",
        _ulaw(tmp_path / "speech_8k.ulaw"),
    )
    screenshot = tmp_path / "live-calls.png"
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 800})
                await page.goto(f"http://127.0.0.1:{agent.http_port}/live#token={TOKEN}")
                card = page.locator("article.call").first
                await card.wait_for(timeout=15_000)
                # The caller's words reach the page while the call goes on.
                line = card.locator('.transcript [data-speaker="caller"]').first
                await line.wait_for(timeout=20_000)
                assert (await line.inner_text()).strip()
                facts = await card.locator(".facts").inner_text()
                assert "default" in facts and "sip" in facts and "PCMU" in facts
                assert (await card.locator("h3").inner_text()) == "caller"
                assert (await page.locator("#active-count").inner_text()) == "1"
                await page.screenshot(path=str(screenshot), full_page=True)
                await card.locator("button.hangup").click()
                row = page.locator("#ended tbody tr").first
                await row.wait_for(timeout=25_000)
                assert "operator hangup" in await row.inner_text()
                record = row.locator("a", has_text="record")
                href = await record.get_attribute("href")
                assert href is not None and href.startswith("/calls/")
                assert (await page.locator("#active-count").inner_text()) == "0"
                await page.screenshot(path=str(tmp_path / "live-calls-ended.png"))
                # The link fetches the record with the token and opens it.
                async with page.context.expect_page() as opened:
                    await record.click()
                shown = await opened.value
                await shown.wait_for_load_state()
                assert href.rsplit("/", 1)[1] in await shown.content()
            finally:
                await browser.close()
    finally:
        code, output = finish(caller, timeout_s=40)
    assert code == 0, output  # SIPp received the BYE the button caused and answered it
    assert screenshot.stat().st_size > 10_000
    ended = agent.log_events("call_event_ended")
    assert [e["reason"] for e in ended] == ["operator_hangup"]
