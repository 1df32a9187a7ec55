"""The exact cut, without sockets: truncate at what was played, never past what was
received, skip at 0, never twice, and drop the cut response's later audio."""

from __future__ import annotations

import numpy as np

from telephony_agent.call.interruption import CutTracker
from telephony_agent.call.playback import Playback
from telephony_agent.call.profile import GREETING_AUDIO_ITEM

RATE = 8000


def _delta(ms: int) -> bytes:
    samples = RATE * ms // 1000
    return (np.full(samples, 1000, dtype=np.int16)).astype("<i2").tobytes()


def _play(playback: Playback, tracker: CutTracker, frames: int) -> None:
    for _ in range(frames):
        frame = playback.pop_frame()
        if frame.speech and frame.item_id is not None:
            tracker.frame_heard(frame.item_id)


def _receive(playback: Playback, tracker: CutTracker, response: str, item: str, ms: int) -> None:
    assert tracker.accept_delta(response, item, True)
    playback.push_delta(item, _delta(ms))


def test_a_cut_mid_item_truncates_at_what_was_played_and_cancels() -> None:
    playback, tracker = Playback(RATE, RATE), CutTracker()
    _receive(playback, tracker, "r1", "a", 1000)
    _play(playback, tracker, 10)
    cut = tracker.cut(playback, response_id="r1", response_active=True)
    assert cut.heard == "a" and cut.cancel
    assert cut.truncates == (("a", 200),)
    assert cut.interruption.played_ms == 200 and cut.interruption.received_ms == 1000
    assert not playback.buffer.is_playing
    # Everything later of the cut response or item is stale.
    assert not tracker.accept_delta("r1", "a", True)
    assert not tracker.accept_delta("r1", "b", True)
    assert tracker.is_stale(None, "a") and tracker.is_response_stale("r1")


def test_nothing_played_is_not_truncated_and_a_finished_item_is_left_alone() -> None:
    playback, tracker = Playback(RATE, RATE), CutTracker()
    _receive(playback, tracker, "r1", "a", 200)
    cut = tracker.cut(playback, response_id="r1", response_active=True)
    assert cut.cancel and cut.truncates == ()
    # An item heard to its end after its response.done is history.
    _receive(playback, tracker, "r2", "b", 100)
    playback.end_item()
    tracker.response_done("r2")
    _play(playback, tracker, 5)
    cut = tracker.cut(playback, response_id=None, response_active=False)
    assert cut.truncates == () and not cut.cancel and cut.heard is None


def test_a_done_response_still_playing_is_truncated_once_and_never_cancelled() -> None:
    playback, tracker = Playback(RATE, RATE), CutTracker()
    _receive(playback, tracker, "r1", "a", 1000)
    playback.end_item()
    tracker.response_done("r1")
    _play(playback, tracker, 3)
    first = tracker.cut(playback, response_id=None, response_active=False)
    assert first.truncates == (("a", 60),) and not first.cancel
    second = tracker.cut(playback, response_id=None, response_active=False)
    assert second.truncates == ()
    # A delta after its response.done can never be placed in the conversation.
    assert not tracker.accept_delta("r1", "z", True)


def test_the_greeting_recording_is_never_truncated() -> None:
    playback, tracker = Playback(RATE, RATE), CutTracker()
    playback.push_delta(GREETING_AUDIO_ITEM, _delta(500))
    _play(playback, tracker, 5)
    cut = tracker.cut(playback, response_id=None, response_active=False)
    assert cut.heard == GREETING_AUDIO_ITEM and cut.truncates == ()
