"""`[agent] output_rate = "leg"`: the model speaks at the leg's own rate, so nothing is
resampled on the way out, and whatever `session.updated` reports is followed."""

from __future__ import annotations

import numpy as np
import pytest

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.realtime.backend import BackendOptions
from telephony_agent.realtime.dialect import Dialect
from tests.call.helpers import run_file_call, sample_speech, silence


@pytest.mark.parametrize(
    ("forced", "effective"),
    [(None, 16000), (24000, 24000)],  # honoured (Yandex), or overridden by the provider
)
async def test_yandex_speaks_at_the_leg_rate_or_what_it_reports(
    forced: int | None, effective: int
) -> None:
    speech = sample_speech(16000)
    caller = np.concatenate([silence(16000, 300), speech])
    result = await run_file_call(
        caller,
        leg_rate=16000,
        options=BackendOptions(
            realtime_factor=40.0, dialect="yandex", output_rate=forced, capture=True
        ),
        tail_s=5.0,
        dialect=Dialect.YANDEX,
        output_rate=16000,
    )
    assert result.session.output_rate == effective
    heard = result.leg.received_pcm()
    correlation, _ = best_lag_correlation(heard, speech, max_lag=heard.size)
    assert correlation >= 0.9
    agent = [line.text for line in result.record.transcript if line.speaker == "agent"]
    assert agent and agent[0].startswith("Echo of")  # Yandex's words come as output_text
    model = bytes(result.backend.stats.audio_out)
    played = heard.astype("<i2").tobytes()
    # At the leg's rate the model's samples reach the leg untouched: no resampling.
    assert (played.find(model) >= 0) == (effective == 16000)
