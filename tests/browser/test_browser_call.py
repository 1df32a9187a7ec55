"""A person's browser call, played by headless Chromium with a fake microphone.

`telephony-agent serve` runs as a real process with the echo backend; Chromium
opens its demo page, presses Call, speaks a WAV file through the fake
microphone, and the test records what the page plays back through WebAudio.
The agent's audio must be the caller's own speech (echo), the transcript panel
must show both sides, and a screenshot of the page is kept as an artifact.
"""

from __future__ import annotations

import base64
import shutil
import wave
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import soxr
from numpy.typing import NDArray
from playwright.async_api import Page, async_playwright

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.media.audiofile import decode_audio_file
from tests.peers.agent_process import AgentServer, start_agent

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
RATE = 48000
PAUSE_S = 4.0
RECORD_S = 14.0

# Records every remote audio track the page receives, through WebAudio, as 16-bit PCM.
CAPTURE_SCRIPT = """
(() => {
  const Original = window.RTCPeerConnection;
  window.__captured = [];
  window.__captureRate = 0;
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener('track', (event) => {
        if (event.track.kind !== 'audio') return;
        const context = new AudioContext({sampleRate: 48000});
        window.__captureRate = context.sampleRate;
        const source = context.createMediaStreamSource(new MediaStream([event.track]));
        const tap = context.createScriptProcessor(4096, 1, 1);
        tap.onaudioprocess = (e) => {
          const input = e.inputBuffer.getChannelData(0);
          const pcm = new Int16Array(input.length);
          for (let i = 0; i < input.length; i++) {
            pcm[i] = Math.max(-32768, Math.min(32767, Math.round(input[i] * 32767)));
          }
          window.__captured.push(pcm);
        };
        source.connect(tap);
        tap.connect(context.destination);
      });
    }
  };
})();
"""

COLLECT_SCRIPT = """
() => {
  const chunks = window.__captured;
  let total = 0;
  for (const c of chunks) total += c.length;
  const all = new Int16Array(total);
  let offset = 0;
  for (const c of chunks) { all.set(c, offset); offset += c.length; }
  const bytes = new Uint8Array(all.buffer);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return {rate: window.__captureRate, pcm: btoa(binary)};
}
"""


def _speech() -> NDArray[np.int16]:
    path = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
    return decode_audio_file(path, RATE)


def _write_microphone(path: Path, speech: NDArray[np.int16]) -> None:
    """Speech then a pause (so the agent's turn comes), looped by Chromium."""
    signal = np.concatenate([speech, np.zeros(int(PAUSE_S * RATE), np.int16)])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(signal.astype("<i2").tobytes())


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentServer]:
    server = start_agent(tmp_path / "agent", {"sip": {"max_calls": 4}})
    try:
        yield server
    finally:
        code = server.stop()
        if code != 0:
            print(server.log_tail())


def _best_echo(said: NDArray[np.float64], heard: NDArray[np.float64]) -> tuple[float, float]:
    """The best-matching echoed utterance: (correlation, seconds into the recording).

    The microphone file loops, so the recording holds one or two echoes; each is
    judged on its own (a hiccup of a busy machine in one must not hide the other).
    """
    best = (0.0, 0.0)
    offset = 0
    while heard.size - offset > said.size // 2:
        rest = heard[offset:]
        _, lag = best_lag_correlation(said, rest, rest.size - 1)
        start = max(0, lag)
        segment = rest[start : start + said.size]
        correlation, _ = best_lag_correlation(said, segment, RATE // 10)
        if correlation > best[0]:
            best = (correlation, (offset + start) / RATE)
        offset += start + said.size
    return best


async def _wait_for_line(page: Page, speaker: str, timeout_ms: float) -> str:
    locator = page.locator(f'#transcript [data-speaker="{speaker}"]').first
    await locator.wait_for(timeout=timeout_ms)
    return await locator.inner_text()


async def test_browser_talks_to_the_agent_and_hears_itself(
    agent: AgentServer, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    speech = _speech()
    microphone = tmp_path / "microphone.wav"
    _write_microphone(microphone, speech)
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
                "--allow-loopback-in-peer-connection",
            ],
        )
        try:
            page = await browser.new_page()
            await page.add_init_script(CAPTURE_SCRIPT)
            await page.goto(f"http://127.0.0.1:{agent.http_port}/")
            # A fake microphone is a "headset": no echo cancellation or noise
            # suppression reshaping the test signal.
            await page.check("#headset")
            await page.click("#call")
            await page.wait_for_timeout(RECORD_S * 1000)
            caller_line = await _wait_for_line(page, "caller", 10_000)
            agent_line = await _wait_for_line(page, "agent", 10_000)
            captured = await page.evaluate(COLLECT_SCRIPT)
            await page.click("#hangup")
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(ARTIFACTS / "browser-call.png"), full_page=True)
        finally:
            await browser.close()
    assert caller_line.strip() and agent_line.strip()
    rate = int(captured["rate"])
    heard = np.frombuffer(base64.b64decode(captured["pcm"]), dtype="<i2").astype(np.float64)
    if rate != RATE:
        heard = soxr.resample(heard, rate, RATE)
    said = speech.astype(np.float64)
    correlation, at = _best_echo(said, heard)
    print(f"browser echo correlation {correlation:.3f} at {at:.2f} s")
    assert correlation >= 0.8, correlation
    health = agent.wait_health(lambda h: h.get("webrtc_calls", 0) == 0)
    assert health.get("webrtc_calls", 0) == 0, health
