"""baresip (Debian's baresip-core) calls `serve` over SIP/TLS with SDES-SRTP media and
hears the agent's echo of its speech.

Why a second, independent TLS+SRTP stack: our own `call` command shares the agent's
SIP and SRTP code, so it cannot catch a mistake both sides make the same way. baresip
uses libre's TLS (OpenSSL) and libsrtp through its `srtp` module; its account asks for
`mediaenc=srtp-mand`, so it offers `RTP/SAVP` with `a=crypto` and refuses plain audio.
baresip 1.0 with libre 1.1 does not verify the server's certificate (it connects
without `sip_cafile` as well), so this is an interoperability test; certificate
verification is tested with our own client in `test_tls.py`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.wav import WavWriter, read_wav
from telephony_agent.media.audiofile import decode_audio_file

from .conftest import SAMPLE, StartAgent
from .test_baresip import (
    BARESIP_RUN_S,
    MIN_CORRELATION,
    TRAILING_SILENCE_S,
    baresip_config,
    dial_with_baresip,
)
from .test_tls import _certificate

pytestmark = pytest.mark.skipif(
    shutil.which("baresip") is None,
    reason="baresip is not installed (Debian/Ubuntu package baresip-core; .ci/run installs it)",
)


def test_baresip_calls_over_tls_with_srtp_and_hears_the_agent(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path / "tls")
    server = start_agent_server(
        sip={
            "transports": "udp+tls",
            "tls_port": 0,
            "tls_certificate": str(cert),
            "tls_key": str(key),
            "codecs": "PCMU",
        },
        rtp={"srtp": "required"},
    )
    (listening,) = server.log_events("sip_listening")
    tls_address = str(listening["tls_address"])
    rate = 8000
    speech = decode_audio_file(SAMPLE, rate)
    source = tmp_path / "speech.wav"
    with WavWriter(source, rate) as wav:
        wav.write(speech)
        wav.write(np.zeros(int(TRAILING_SILENCE_S * rate), dtype=np.int16))
    phone = tmp_path / "baresip"
    baresip_config(phone, source, "PCMU")
    config = phone / "config"
    config.write_text(
        config.read_text(encoding="utf-8")
        + f"sip_cafile\t{cert}\nmodule\tsrtp.so\n"
        + "sip_trans_def\ttls\n",
        encoding="utf-8",
    )
    (phone / "accounts").write_text(
        "<sip:tester@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMU;mediaenc=srtp-mand\n",
        encoding="utf-8",
    )
    output = dial_with_baresip(phone, f"sip:agent@{tls_address}", BARESIP_RUN_S)
    health = server.wait_health(lambda h: h["active_calls"] == 0 and h["completed"] >= 1)
    assert health["answered"] == 1, health
    (srtp_on,) = server.log_events("srtp_on")
    assert srtp_on["suite"].startswith("AES_CM_128_HMAC_SHA1_"), srtp_on
    (leg,) = server.log_events("rtp_leg_ended")
    assert leg["packets_in"] > 100 and leg["malformed"] == 0, leg

    dumps = sorted((phone / "dump").glob("dump-*-dec.wav"))
    assert len(dumps) == 1, (list((phone / "dump").iterdir()), output[-3000:])
    heard, heard_rate = read_wav(dumps[0])
    assert heard_rate == rate
    correlation, lag = best_lag_correlation(speech, heard, max_lag=heard.size)
    print(f"\nbaresip TLS+SRTP: echo correlation {correlation:.3f} at {lag / rate:.2f} s")
    assert correlation >= MIN_CORRELATION, (correlation, lag)
