"""A silent caller is asked if they are there, then told goodbye and hung up on."""

from __future__ import annotations

import numpy as np

from telephony_agent.call.bridge import CallProfile
from telephony_agent.call.idle import IdleWatch
from telephony_agent.realtime.backend import BackendOptions
from tests.call.helpers import noise_burst, run_file_call, silence
from tests.call.test_keypad_and_tools import RecordingSession


def test_the_watch_counts_only_silence_and_a_caller_resets_it() -> None:
    watch = IdleWatch(after_ms=1000, max_reprompts=1)
    assert watch.tick(0, agent_quiet=True) is None
    assert watch.tick(980, agent_quiet=True) is None
    assert watch.tick(1000, agent_quiet=True) == "reprompt"
    assert watch.tick(1020, agent_quiet=False) is None  # the agent asks
    assert watch.tick(1500, agent_quiet=True) is None
    watch.caller_started()
    assert watch.tick(5000, agent_quiet=True) is None  # the caller talks
    watch.caller_stopped()
    assert watch.tick(5000, agent_quiet=True) is None
    assert watch.tick(6000, agent_quiet=True) == "reprompt"  # the count started over
    assert watch.tick(6020, agent_quiet=True) is None
    assert watch.tick(7020, agent_quiet=True) == "goodbye"


async def test_a_silent_caller_is_reprompted_then_hung_up_on_as_idle() -> None:
    result = await run_file_call(
        silence(8000, 200),
        leg_rate=8000,
        options=BackendOptions(behaviour="tone", realtime_factor=20.0),
        tail_s=30.0,
        session_class=RecordingSession,
        profile=CallProfile(idle_reprompt_s=1.0, idle_max_reprompts=2),
    )
    session = result.session
    assert isinstance(session, RecordingSession)
    asked = [text for kind, text in session.asked if kind == "create"]
    assert asked == [
        CallProfile.idle_reprompt_instructions,
        CallProfile.idle_reprompt_instructions,
        CallProfile.idle_goodbye_instructions,
    ]
    assert (result.record.end_reason, result.record.ended_by) == ("idle", "timeout")
    # All three answers (two prompts and the goodbye, about 1 s each) were heard before
    # the hang-up.
    assert sum(1 for frame in result.leg.sent if frame.speech) > 3 * 45


async def test_a_caller_who_speaks_is_never_treated_as_idle() -> None:
    caller = np.concatenate(
        [silence(8000, 600), noise_burst(8000, 700, seed=2), silence(8000, 600)] * 4
    )
    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(behaviour="tone", realtime_factor=20.0),
        tail_s=0.5,
        session_class=RecordingSession,
        profile=CallProfile(idle_reprompt_s=1.5, idle_max_reprompts=0),
    )
    assert result.record.end_reason == "caller_hangup"
    session = result.session
    assert isinstance(session, RecordingSession)
    assert CallProfile.idle_goodbye_instructions not in [text for _, text in session.asked]
