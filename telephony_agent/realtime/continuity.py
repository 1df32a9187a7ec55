"""What one logical session remembers across its connections, and what it replays.

Why a module of its own: the protocol core decides what to send on the connection it
has; this class watches the same events and sends to remember what a *replacement*
connection will need, and nothing else:

* the recap (`recap.py`): both sides of the conversation, as the caller heard them;
* the replay ledger (`replay.py`): the caller's unanswered audio and the answer owed;
* which response each agent item belongs to (a cut item settles its response's turn);
* tool calls still open (a session must not be switched while its tool runs).

Sans-I/O like the protocol: events and sends in, a `Resume` out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import structlog

from telephony_agent.realtime.bounded import BoundedSet
from telephony_agent.realtime.events import (
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    AudioDelta,
    FunctionCall,
    InputCommitted,
    InputTranscript,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
)
from telephony_agent.realtime.outgoing import ClientEvents
from telephony_agent.realtime.recap import Recap
from telephony_agent.realtime.replay import CallerReplay

log = structlog.get_logger(__name__)

_MAX_ITEMS = 256
_MAX_RESPONSES = 256
_SPEAKERS = {"user": "Caller", "assistant": "Agent"}


@dataclass(frozen=True)
class Resume:
    """The frames that brief a replacement connection, and whether to ask an answer."""

    frames: list[str]
    #: An answer is owed that the replayed audio alone will not bring.
    ask_response: bool
    replayed_ms: int


class Continuity:
    """The memory a replacement connection is briefed from; see the module docstring."""

    def __init__(
        self,
        *,
        recap_lines: int = 12,
        recap_max_chars: int = 4000,
        replay_chunks: int = 750,
        lead_chunks: int = 50,
    ) -> None:
        self.recap = Recap(recap_lines, recap_max_chars)
        self.replay = CallerReplay(replay_chunks, lead_chunks)
        self._item_response: OrderedDict[str, str] = OrderedDict()
        self._with_audio = BoundedSet(_MAX_RESPONSES)
        #: call_id → response_id, from the call until its output is sent (or its
        #: connection is gone).
        self.open_calls: dict[str, str] = {}
        self._call_names: OrderedDict[str, str] = OrderedDict()

    # ------------------------------------------------------------------ events

    def observe(self, event: ServerEvent) -> None:
        """A server event of the live connection (never a synthetic one)."""
        if isinstance(event, AudioDelta):
            if event.audio and event.item_id not in self._item_response:
                self._remember_item(event.item_id, event.response_id)
                self.recap.agent_text(event.item_id, "")
            if event.audio and event.response_id not in self._with_audio:
                self._with_audio.add(event.response_id)
        elif isinstance(event, AssistantTranscriptDelta):
            self._remember_item(event.item_id, event.response_id)
            self.recap.agent_text(event.item_id, event.delta)
        elif isinstance(event, AssistantTranscriptDone):
            self._remember_item(event.item_id, event.response_id)
            self.recap.agent_said(event.item_id, event.text)
        elif isinstance(event, SpeechStarted):
            self.replay.speech_started()
        elif isinstance(event, SpeechStopped | InputCommitted):
            self.replay.turn_committed(event.item_id)
            self.recap.caller_turn(event.item_id)
        elif isinstance(event, InputTranscript):
            if event.final:
                self.recap.caller_said(event.item_id, event.transcript)
        elif isinstance(event, ResponseCreated):
            self.replay.response_created(event.response_id)
        elif isinstance(event, FunctionCall):
            self.open_calls[event.call_id] = event.response_id
            self._call_names[event.call_id] = event.name
            while len(self._call_names) > _MAX_ITEMS:
                self._call_names.popitem(last=False)
        elif isinstance(event, ResponseDone):
            self.replay.response_done(event.response_id)
            if event.status != "completed":  # its calls are discarded, never answered
                for call_id, response_id in list(self.open_calls.items()):
                    if response_id == event.response_id:
                        del self.open_calls[call_id]

    def _remember_item(self, item_id: str, response_id: str) -> None:
        self._item_response[item_id] = response_id
        self._item_response.move_to_end(item_id)
        while len(self._item_response) > _MAX_ITEMS:
            self._item_response.popitem(last=False)

    # ------------------------------------------------------------------ our sends

    def appended(self, chunk: bytes) -> None:
        self.replay.append(chunk)

    def committed(self) -> None:
        """Our own commit (manual turns): the item id follows in `input_audio_buffer.committed`."""
        self.replay.turn_committed(None)

    def tool_name(self, call_id: str) -> str:
        return self._call_names.get(call_id, "a tool")

    def tool_output(self, call_id: str, output: str) -> None:
        self.open_calls.pop(call_id, None)
        self.recap.tool_result(self.tool_name(call_id), output)
        self.replay.input_added()

    def message(self, role: str, text: str) -> None:
        self.recap.note(_SPEAKERS.get(role, "Note"), text)
        if role == "user":
            self.replay.input_added()

    def heard(self, item_id: str, heard_ms: int, received_ms: int) -> None:
        """The caller heard `heard_ms` of this agent item (a barge-in or a lost link cut it)."""
        if received_ms > 0:
            self.recap.heard(item_id, min(1.0, max(0, heard_ms) / received_ms))
        elif heard_ms <= 0:
            self.recap.heard(item_id, 0.0)
        self.replay.heard(self._item_response.get(item_id), heard_ms)

    # ------------------------------------------------------------------ connections

    def link_lost(self, response_id: str | None) -> None:
        """The live connection ended (or was switched) with `response_id` in flight."""
        had_audio = response_id is not None and response_id in self._with_audio
        self.replay.link_lost(response_id, had_audio)
        self.open_calls.clear()  # their call ids died with the connection

    @property
    def settled(self) -> bool:
        """Nothing owed, nobody speaking, no tool running."""
        return self.replay.settled and not self.open_calls

    def resume(
        self, out: ClientEvents, *, role: str, chunk_ms: int, server_vad: bool, recap: bool
    ) -> Resume:
        """In order: the recap (without the words of a turn whose audio is replayed), the
        caller audio kept for replay (an unanswered question, or words spoken while no
        session listened), and a commit of it when turns are manual."""
        replay = self.replay.replay(server_vad=server_vad)
        leave_out = (replay.replayed_item,) if replay.replayed_item else ()
        text = self.recap.text(leave_out) if recap else None
        frames = [] if text is None else [out.message(role, text)]
        frames.extend(out.append(chunk) for chunk in replay.audio)
        if replay.caller_turn and not server_vad:
            frames.append(out.encode({"type": "input_audio_buffer.commit"}))
        if replay.audio or replay.ask_response:
            log.info(
                "realtime_resume_replayed",
                audio_ms=len(replay.audio) * chunk_ms,
                caller_turn=replay.caller_turn,
                ask_response=replay.ask_response,
            )
        return Resume(frames, replay.ask_response, len(replay.audio) * chunk_ms)
