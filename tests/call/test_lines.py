"""Transcript lines as heard: agent lines after their audio, cut on barge-in; caller turns."""

from __future__ import annotations

from telephony_agent.call.lines import TRANSCRIPT_WAIT_MS, AgentLines, CallerLines, Line, cut_text


def test_cut_text_ends_on_a_word_with_an_ellipsis() -> None:
    text = "We have a table for two people tomorrow at seven."
    assert cut_text(text, 1.0) == text
    assert cut_text(text, 0.5) == "We have a table for two…"
    assert cut_text(text, 0.45) == "We have a table for…"
    assert cut_text(text, 0.02) == "…"
    assert cut_text("Hello, there", 0.5) == "Hello…"


def _play(lines: AgentLines, item: str, start_ms: int, frames: int) -> list[Line]:
    out: list[Line] = []
    for i in range(frames):
        out += lines.frame(item, start_ms + 20 * i)
    return out


def test_an_agent_line_is_written_when_its_audio_has_played_out() -> None:
    lines = AgentLines()
    assert _play(lines, "a", 1000, 10) == []
    assert lines.text_done("a", "Hello there.", has_audio=True, now_ms=1100) == []
    assert lines.audio_done("a", playing=True) == []
    assert _play(lines, "a", 1200, 5) == []
    (line,) = lines.frame(None, 1300)
    assert line == Line("agent", "Hello there.", 1000, 1300, False)
    # Written once.
    assert lines.frame(None, 1320) == [] and lines.flush(2000) == []


def test_a_barge_in_cuts_the_line_to_what_was_heard() -> None:
    lines = AgentLines()
    lines.text_delta("a", "We have a table for ")
    lines.text_delta("a", "two people tomorrow.")
    _play(lines, "a", 0, 50)  # 1 s heard of 2 s received
    (line,) = lines.cut("a", played_ms=1000, received_ms=2000, now_ms=1000)
    assert line.truncated and line.text == "We have a table for…"
    assert (line.start_ms, line.end_ms) == (0, 1000)
    # A transcript that arrives after the cut changes nothing.
    assert (
        lines.text_done(
            "a", "We have a table for two people tomorrow.", has_audio=True, now_ms=1100
        )
        == []
    )


def test_nothing_heard_means_no_line_and_text_only_answers_are_written_at_once() -> None:
    lines = AgentLines()
    lines.text_delta("a", "Never heard.")
    assert lines.cut("a", played_ms=0, received_ms=400, now_ms=500) == []
    (line,) = lines.text_done("b", "Text only.", has_audio=False, now_ms=700)
    assert (line.text, line.start_ms, line.truncated) == ("Text only.", 700, False)


def test_audio_done_after_the_buffer_ran_dry_still_writes_the_line() -> None:
    lines = AgentLines()
    lines.text_done("a", "Short.", has_audio=True, now_ms=0)
    _play(lines, "a", 0, 3)
    assert lines.frame(None, 60) == []  # an underrun: more audio may come
    (line,) = lines.audio_done("a", playing=False)
    assert line.text == "Short."


def test_caller_turns_take_vad_times_and_say_so_when_no_words_came() -> None:
    lines = CallerLines()
    lines.speech_started("u1", 1000)
    assert lines.speech_stopped("u1", 3500) == []
    (said,) = lines.transcript("u1", "A table for two.", now_ms=3900)
    assert said == Line("caller", "A table for two.", 1000, 3500)
    lines.speech_started("u2", 5000)
    lines.speech_stopped("u2", 6200)
    late = 6200 + TRANSCRIPT_WAIT_MS
    lines.speech_started("u3", late)
    (untranscribed,) = lines.speech_stopped("u3", late + 500)
    assert untranscribed.text == "[caller spoke 1.2 s; no transcript]"
    assert (untranscribed.start_ms, untranscribed.end_ms) == (5000, 6200)
    (last,) = lines.flush(late + 600)
    assert last.start_ms == late
