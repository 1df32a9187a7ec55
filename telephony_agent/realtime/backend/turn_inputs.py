"""What arrived since the previous response: collected here, handed to the next one.

A behaviour answers "what just happened" (the caller spoke and said a known phrase,
typed digits, a tool returned), so the session records each kind of input as it
arrives and the next response takes it all at once. Taking clears it: an old keypad
entry must not be answered twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from telephony_agent.realtime.backend.conversation import ItemRecord
from telephony_agent.realtime.backend.recognise import PhraseSpotter
from telephony_agent.realtime.backend.turn import ToolOutput, TurnInput

TEXT_PARTS = frozenset({"input_text", "text"})


def caller_transcript(phrase: str | None, seconds: float) -> str:
    """The recognised phrase, or an honest placeholder: never invented words."""
    return phrase if phrase is not None else f"[caller speech {seconds:.2f} s]"


def caller_audio_item(item_id: str) -> dict[str, Any]:
    """The wire form of a committed caller turn (its transcript is filled in later)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def transcription_completed(item_id: str, transcript: str, seconds: float) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": round(seconds, 3)},
    }


def user_text(record: ItemRecord) -> str | None:
    """The text of a user message item (its text parts joined), if it has any."""
    if record.type != "message" or record.role != "user":
        return None
    parts: list[Any] = record.wire.get("content") or []
    texts = [
        str(p.get("text"))
        for p in parts
        if isinstance(p, dict) and p.get("type") in TEXT_PARTS and isinstance(p.get("text"), str)
    ]
    return " ".join(texts) if texts else None


class TurnInputs:
    def __init__(self, spotter: PhraseSpotter | None) -> None:
        #: Only behaviours that answer known phrases spot them (it costs a few ms a turn).
        self.spotter = spotter
        self.audio: NDArray[np.int16] | None = None
        self.phrase: str | None = None
        self.text: str | None = None
        self.tool_output: ToolOutput | None = None

    def caller_audio(self, audio: NDArray[np.int16], rate: int) -> str | None:
        """Record committed caller audio; returns the phrase it was recognised as."""
        spotted = self.spotter.spot(audio, rate) if self.spotter is not None else None
        self.audio = audio
        self.phrase = spotted.text if spotted is not None else None
        return self.phrase

    def forget_audio(self) -> None:
        """An idle timeout commits silence: answer it with a prompt, not as speech."""
        self.audio = None
        self.phrase = None

    def client_item(self, record: ItemRecord, call_name: str | None) -> None:
        """Record a client-created text message or function call output."""
        text = user_text(record)
        if text is not None:
            self.text = text
        if record.type == "function_call_output" and record.call_id is not None:
            output = record.wire.get("output")
            self.tool_output = ToolOutput(
                record.call_id, call_name, output if isinstance(output, str) else ""
            )

    def take(self, input_rate: int, output_rate: int, instructions: str | None) -> TurnInput:
        turn = TurnInput(
            self.audio,
            input_rate,
            output_rate,
            caller_phrase=self.phrase,
            user_text=self.text,
            tool_output=self.tool_output,
            instructions=instructions,
        )
        self.audio = self.phrase = self.text = None
        self.tool_output = None
        return turn
