"""baresip, a real softphone, calls `telephony-agent serve` and hears its echo.

baresip runs headless: `aufile` plays the sample (speech, then silence) as the
microphone, `aubridge,nil` is a silent speaker, and `sndfile` writes what was
decoded from the agent's RTP to `dump-*-dec.wav`. The local backend's `echo`
behaviour repeats the caller's speech once the caller goes quiet, so that dump
must contain the sample, delayed: its normalised correlation with the sample,
at the best lag, is the end-to-end audio quality through each codec.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.wav import WavWriter, read_wav
from telephony_agent.media.audiofile import decode_audio_file

from .agent_process import free_port
from .conftest import SAMPLE, StartAgent

pytestmark = pytest.mark.skipif(
    shutil.which("baresip") is None,
    reason="baresip is not installed (Debian/Ubuntu package baresip-core; .ci/run installs it)",
)

MODULE_PATH = "/usr/lib/baresip/modules"
#: Silence after the speech: the echo starts ~0.5 s after the caller stops and lasts as
#: long as the speech; baresip hangs up when its source file ends.
TRAILING_SILENCE_S = 5.0
#: baresip quits this long after starting (the call is over by then).
BARESIP_RUN_S = 11
MIN_CORRELATION = 0.9

#: Codec name in the account line → the rate baresip's audio runs at for it.
CODEC_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 16000}


def baresip_config(directory: Path, source: Path, codec: str) -> None:
    """A headless baresip: file in, nothing out, decoded audio dumped, one account."""
    dumps = directory / "dump"
    dumps.mkdir(parents=True)
    config = {
        "poll_method": "epoll",
        "sip_listen": f"127.0.0.1:{free_port()}",
        "sip_trans_def": "udp",
        "audio_player": "aubridge,nil",
        "audio_alert": "aubridge,nil",
        "audio_source": f"aufile,{source}",
        "audio_level": "no",
        "rtp_ports": "24000-24999",
        "rtcp_mux": "no",
        "jitter_buffer_delay": "5-10",
        "module_path": MODULE_PATH,
        "snd_path": str(dumps),
    }
    lines = [f"{key}\t{value}" for key, value in config.items()]
    for module in ("g711.so", "g722.so", "aufile.so", "aubridge.so", "sndfile.so"):
        lines.append(f"module\t{module}")
    lines += ["module_app\taccount.so", "module_app\tmenu.so"]
    (directory / "config").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "accounts").write_text(
        f"<sip:tester@127.0.0.1>;regint=0;audio_codecs={codec}\n", encoding="utf-8"
    )


def dial_with_baresip(phone: Path, uri: str, run_s: float) -> str:
    """Run baresip with the configuration in `phone`, dial `uri`, quit after `run_s`;
    its output, once it has exited cleanly with the call established."""
    result = subprocess.run(
        ["baresip", "-f", str(phone), "-e", f"/dial {uri}", "-t", str(int(run_s))],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=run_s + 20,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Call established" in output, output[-4000:]
    return output


@pytest.mark.parametrize("codec", list(CODEC_RATES))
def test_baresip_hears_its_speech_echoed(
    start_agent_server: StartAgent, tmp_path: Path, codec: str
) -> None:
    server = start_agent_server(sip={"codecs": "G722,PCMA,PCMU"})
    rate = CODEC_RATES[codec]
    speech = decode_audio_file(SAMPLE, rate)
    source = tmp_path / f"speech_{rate}.wav"
    with WavWriter(source, rate) as wav:
        wav.write(speech)
        wav.write(np.zeros(int(TRAILING_SILENCE_S * rate), dtype=np.int16))
    phone = tmp_path / "baresip"
    baresip_config(phone, source, codec)

    output = dial_with_baresip(phone, f"sip:agent@127.0.0.1:{server.sip_port}", BARESIP_RUN_S)

    health = server.wait_health(lambda h: h["active_calls"] == 0 and h["completed"] >= 1)
    assert (health["answered"], health["completed"]) == (1, 1), health
    (answered,) = server.log_events("call_answered")
    assert answered["codec"] == codec, answered

    dumps = sorted((phone / "dump").glob("dump-*-dec.wav"))
    assert len(dumps) == 1, (list((phone / "dump").iterdir()), output[-3000:])
    heard, heard_rate = read_wav(dumps[0])
    assert heard_rate == rate
    correlation, lag = best_lag_correlation(speech, heard, max_lag=heard.size)
    print(
        f"\nbaresip {codec}: echo correlation {correlation:.3f} "
        f"at {lag / rate:.2f} s after the speech started"
    )
    assert correlation >= MIN_CORRELATION, (correlation, lag)
    # An echo, not a sidetone: it comes back after the caller's 3.3 s of speech.
    assert lag / rate >= 2.0, (correlation, lag)


def test_a_caller_who_talks_over_the_agent_interrupts_it_through_a_real_call(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    """Barge-in end to end with the default `[turns]`: baresip speaks, the agent starts
    repeating it, and baresip talks over it with another sentence. The agent's
    repetition is ducked, then cut once the caller has spoken for `min_speech_ms`,
    truncated at what was played, and the interruption is answered exactly once."""
    server = start_agent_server()
    rate = 8000
    speech = decode_audio_file(SAMPLE, rate)
    booking = SAMPLE.parent / "booking"
    interruption = decode_audio_file(booking / "sorry_again.wav", rate)
    source = tmp_path / "talks_over.wav"
    with WavWriter(source, rate) as wav:
        wav.write(speech)
        wav.write(np.zeros(int(1.5 * rate), dtype=np.int16))  # the agent starts repeating
        wav.write(interruption)
        wav.write(np.zeros(int(TRAILING_SILENCE_S * rate), dtype=np.int16))
    phone = tmp_path / "baresip"
    baresip_config(phone, source, "PCMU")
    run_s = 17
    dial_with_baresip(phone, f"sip:agent@127.0.0.1:{server.sip_port}", run_s)
    server.wait_health(lambda h: h["active_calls"] == 0 and h["completed"] >= 1)

    (ended,) = server.log_events("call_ended")
    (barge,) = server.log_events("barge_in")
    # Cut mid-repetition: after some of it was heard, well before its 3.35 s end.
    assert 300 <= barge["played_ms"] <= 2500, barge
    assert barge["received_ms"] >= barge["played_ms"]
    assert ended["barge_ins"] == 1 and ended["truncates"] == 1, ended
    assert "ignored_echo" in ended and "ignored_short" in ended
    # No truncate or create was refused by the server (the local backend is strict).
    assert server.log_events("realtime_server_error") == []
    # Both caller turns were answered: the first answer cut, the second heard.
    assert len(server.log_events("turn_latency")) == 2
