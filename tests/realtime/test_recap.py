"""The recap: both sides in conversation order, as heard, bounded."""

from __future__ import annotations

from telephony_agent.realtime.recap import HEADER, MAX_TOOL_CHARS, Recap, cut_text


def body(recap: Recap, leave_out: tuple[str, ...] = ()) -> list[str]:
    text = recap.text(leave_out)
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == HEADER
    return lines[1:]


def test_a_late_caller_transcript_keeps_its_turns_place() -> None:
    recap = Recap()
    recap.caller_turn("u1")  # the turn ends; its words are transcribed later
    recap.agent_text("a1", "Which ")
    recap.agent_text("a1", "day?")
    recap.caller_said("u1", "I need a flight to Paris.")
    assert body(recap) == ["Caller: I need a flight to Paris.", "Agent: Which day?"]


def test_the_final_text_replaces_the_deltas() -> None:
    recap = Recap()
    recap.agent_text("a1", "Whi")
    recap.agent_said("a1", "Which day would you like?")
    assert body(recap) == ["Agent: Which day would you like?"]


def test_an_agent_line_keeps_only_what_was_heard() -> None:
    recap = Recap()
    recap.agent_said("a1", "Your table for four is booked for Friday at eight.")
    recap.heard("a1", 0.5)
    (line,) = body(recap)
    assert line == "Agent: Your table for four is…"
    recap.heard("a1", 0.9)  # a later, longer report never undoes a cut
    assert body(recap) == [line]
    # The final text may come after the cut (it is generated ahead of playback).
    recap.heard("a2", 0.5)
    recap.agent_text("a2", "")
    recap.heard("a2", 0.0)
    recap.agent_said("a2", "Nobody heard this.")
    assert body(recap) == [line]


def test_a_replayed_turn_is_left_out() -> None:
    recap = Recap()
    recap.caller_turn("u1")
    recap.caller_said("u1", "Hello?")
    recap.agent_said("a1", "Hi!")
    recap.caller_turn("u2")
    recap.caller_said("u2", "What time do you open?")
    assert body(recap, ("u2",)) == ["Caller: Hello?", "Agent: Hi!"]


def test_notes_and_tool_results() -> None:
    recap = Recap()
    recap.note("Caller", "The caller typed: 4 5 1 2 #")
    recap.tool_result("check_availability", "x" * 1000)
    notes = body(recap)
    assert notes[0] == "Caller: The caller typed: 4 5 1 2 #"
    assert notes[1].startswith("Tool check_availability returned: xxx")
    assert len(notes[1]) == len("Tool check_availability returned: ") + MAX_TOOL_CHARS
    recap.note("Caller", "   ")
    assert len(body(recap)) == 2


def test_bounded_in_lines_and_characters() -> None:
    recap = Recap(max_lines=4, max_chars=len(HEADER) + 1 + 40)
    for i in range(10):
        recap.caller_turn(f"u{i}")
        recap.caller_said(f"u{i}", f"question {i}")
        recap.agent_said(f"a{i}", f"answer {i}")
    assert len(recap.lines) == 4
    assert body(recap) == ["Caller: question 9", "Agent: answer 9"]  # 40 characters fit two
    assert Recap().text() is None


def test_cut_text_ends_on_a_word() -> None:
    assert cut_text("Hello there friend", 0.5) == "Hello…"
    assert cut_text("Hello", 1.0) == "Hello"
    assert cut_text("Hello", 0.1) == "…"
