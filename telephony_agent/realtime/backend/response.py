"""One response as a paced stream of GA-named events, and how it ends early.

`ResponseRun.plan()` lays out the whole lifecycle up front (created → items → deltas →
done events → `response.done`), with each audio delta delayed by its own duration
divided by `realtime_factor`. Emission state (which items the client has seen, how
much audio and text went out) is tracked by the steps' `on_emit` hooks, so that
`cancel_plan()` closes exactly the parts the client knows about, the way a real server
reports an interrupted response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from telephony_agent.realtime.backend.audio_format import WireFormat
from telephony_agent.realtime.backend.conversation import ItemRecord
from telephony_agent.realtime.backend.ids import IdSource
from telephony_agent.realtime.backend.outbox import CloseConnection, Step
from telephony_agent.realtime.backend.turn import FunctionCallSpec, ResponseContent
from telephony_agent.realtime.backend.wire_dialect import WireDialect

ResponseStatus = Literal["completed", "cancelled", "failed"]

FRAGMENT_TARGET_DELTAS = 240
ARGUMENT_CHUNK = 8


class ResponseHost(Protocol):
    """What a response needs from its session while its events leave."""

    def announce(self, record: ItemRecord) -> str | None:
        """Register an output item; return the previous item id."""
        ...

    def audio_emitted(self, record: ItemRecord, nbytes: int) -> None: ...

    def finished(self, run: ResponseRun, status: ResponseStatus, reason: str | None) -> None: ...


@dataclass(frozen=True)
class Pacing:
    realtime_factor: float
    delta_ms: int
    first_delta_delay_s: float
    fragment: bool
    close_with: CloseConnection | None = None
    """Close the websocket after `deltas_before_close` audio deltas (no error event)."""
    deltas_before_close: int = 0


@dataclass
class _Output:
    record: ItemRecord
    index: int
    added: bool = False
    done: bool = False
    part_added: bool = False
    sent_text: str = ""
    previous_item_id: str | None = None


@dataclass
class _Message(_Output):
    audio: bytes = b""
    text: str = ""


@dataclass
class _Call(_Output):
    call: FunctionCallSpec = field(default_factory=lambda: FunctionCallSpec("", "{}"))


def split_audio(nbytes: int, chunk: int, fragment: bool) -> list[int]:
    """Delta sizes in bytes. Fragment mode: 200+ deltas, including an empty one, a
    1-byte one, and odd sizes that split PCM16 samples across deltas."""
    if nbytes <= 0:
        return []
    if not fragment:
        sizes = [chunk] * (nbytes // chunk)
        if nbytes % chunk:
            sizes.append(nbytes % chunk)
        return sizes
    step = max(2, (nbytes // FRAGMENT_TARGET_DELTAS) & ~1)
    if nbytes < 2 * step:
        return [0] + [1] * nbytes
    # "" delta, then a 1-byte delta (splits the first sample), then back in step.
    sizes = [0, 1, step - 1]
    rest = nbytes - step
    split_again = True
    while rest > 0:
        size = step
        if split_again and len(sizes) >= FRAGMENT_TARGET_DELTAS // 2:
            size, split_again = step + 1, False  # another sample split mid-stream
        size = min(rest, size)
        sizes.append(size)
        rest -= size
    return sizes


def split_text(text: str, pieces: int, fragment: bool) -> list[str]:
    """Transcript deltas: one character each in fragment mode, else at most `pieces`
    chunks cut at spaces (so they can ride along with the audio deltas)."""
    if not text:
        return []
    if fragment:
        return list(text)
    words = text.split(" ")
    groups = max(1, min(pieces, len(words)))
    per = -(-len(words) // groups)
    chunks = [" ".join(words[i : i + per]) for i in range(0, len(words), per)]
    return [c + " " for c in chunks[:-1]] + [chunks[-1]]


def split_arguments(arguments: str, fragment: bool) -> list[str]:
    size = 1 if fragment else ARGUMENT_CHUNK
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


class ResponseRun:
    def __init__(
        self,
        *,
        response_id: str,
        content: ResponseContent | None,
        audio_out: bool,
        output_format: WireFormat,
        voice: str,
        conversation_id: str,
        input_tokens: int,
        ids: IdSource,
        dialect: WireDialect,
        pacing: Pacing,
        host: ResponseHost,
        rate_limits: bool,
        unknown_events: bool,
    ) -> None:
        self.id = response_id
        self.content = content
        """None for a response that fails (`status: failed`)."""
        self.audio_out = audio_out
        self.format = output_format
        self.rate = output_format.rate
        self._sample_bytes = output_format.sample_bytes
        self.voice = voice
        self.conversation_id = conversation_id
        self.input_tokens = input_tokens
        self.ids = ids
        self.dialect = dialect
        self.pacing = pacing
        self.host = host
        self.rate_limits = rate_limits
        self.unknown_events = unknown_events
        self.finished = False
        self.outputs: list[_Output] = []
        self._first_delay = pacing.first_delta_delay_s
        if content is not None:
            self._build_outputs(content)

    # -- layout -------------------------------------------------------------------

    def _build_outputs(self, content: ResponseContent) -> None:
        if content.text or len(content.audio):
            kind = "output_audio" if self.audio_out else "output_text"
            item_id = self.ids.new("item")
            record = ItemRecord(
                item_id,
                "message",
                "assistant",
                kind,
                self.rate,
                sample_bytes=self._sample_bytes,
                wire=self._message_item(item_id, "in_progress", []),
            )
            audio = self.format.encode(content.audio) if self.audio_out else b""
            self.outputs.append(_Message(record, len(self.outputs), audio=audio, text=content.text))
        for call in content.function_calls:
            call_id = self.ids.new("call")
            item_id = self.ids.new("item")
            record = ItemRecord(
                item_id,
                "function_call",
                None,
                None,
                call_id=call_id,
                wire={
                    "id": item_id,
                    "object": "realtime.item",
                    "type": "function_call",
                    "status": "in_progress",
                    "call_id": call_id,
                    "name": call.name,
                    "arguments": "",
                },
            )
            self.outputs.append(_Call(record, len(self.outputs), call=call))

    def _message_item(self, item_id: str, status: str, content: list[Any]) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def response_object(self, status: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        modalities = ["audio"] if self.audio_out else ["text"]
        obj: dict[str, Any] = {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": [o.record.wire for o in self.outputs if o.added]
            if status != "in_progress"
            else [],
            "conversation_id": self.conversation_id,
            "output_modalities": modalities,
            "max_output_tokens": "inf",
            "audio": {"output": {"format": self.format.to_wire(), "voice": self.voice}},
            "usage": None if status == "in_progress" else self._usage(),
            "metadata": None,
        }
        if self.dialect.beta_session_shape:
            obj["modalities"] = ["audio", "text"] if self.audio_out else ["text"]
            del obj["output_modalities"]
        return obj

    def _usage(self) -> dict[str, Any]:
        audio_ms = sum(
            o.record.sent_ms for o in self.outputs if isinstance(o, _Message) and self.audio_out
        )
        text_chars = sum(len(o.sent_text) for o in self.outputs)
        audio_tokens = int(audio_ms // 50)
        text_tokens = -(-text_chars // 4)
        out = audio_tokens + text_tokens
        return {
            "total_tokens": self.input_tokens + out,
            "input_tokens": self.input_tokens,
            "output_tokens": out,
            "input_token_details": {
                "cached_tokens": 0,
                "text_tokens": self.input_tokens // 4,
                "audio_tokens": self.input_tokens - self.input_tokens // 4,
            },
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }

    def _step(
        self,
        event: dict[str, Any],
        delay: float = 0.0,
        on_emit: Callable[[dict[str, Any]], None] | None = None,
        audio: bytes | None = None,
    ) -> Step:
        return Step(event, delay, audio, on_emit, None, self.id)

    def plan(self) -> list[Step]:
        steps = [
            self._step(
                {"type": "response.created", "response": self.response_object("in_progress")}
            )
        ]
        if self.rate_limits:
            steps.append(
                self._step(
                    {
                        "type": "rate_limits.updated",
                        "rate_limits": [
                            {
                                "name": "requests",
                                "limit": 5000,
                                "remaining": 4999,
                                "reset_seconds": 0.012,
                            },
                            {
                                "name": "tokens",
                                "limit": 400000,
                                "remaining": 395000,
                                "reset_seconds": 0.75,
                            },
                        ],
                    }
                )
            )
        if self.unknown_events:
            steps.append(
                self._step(
                    {
                        "type": "response.mcp_call.in_progress",
                        "output_index": 0,
                        "item_id": self.ids.new("mcp"),
                    }
                )
            )
            steps.append(
                self._step({"type": "output_audio_buffer.started", "response_id": self.id})
            )
        if self.content is None:
            details = {"type": "failed", "error": {"type": "server_error", "code": "server_error"}}
            steps.append(self._done_step("failed", details, None))
            return steps
        for output in self.outputs:
            if isinstance(output, _Message):
                steps += self._message_steps(output)
            elif isinstance(output, _Call):
                steps += self._call_steps(output)
        steps.append(self._done_step("completed", None, None))
        close = self.pacing.close_with
        if close is not None:
            steps = self._cut_for_close(steps, close)
        return steps

    def _cut_for_close(self, steps: list[Step], close: CloseConnection) -> list[Step]:
        seen = 0
        for i, step in enumerate(steps):
            if step.audio is not None:
                if seen == self.pacing.deltas_before_close:
                    return [*steps[:i], Step(None, 0.0, close=close, owner=self.id)]
                seen += 1
        # Fewer audio deltas than requested: close just before response.done.
        return [*steps[:-1], Step(None, 0.0, close=close, owner=self.id)]

    def _take_first_delay(self) -> float:
        delay, self._first_delay = self._first_delay, 0.0
        return delay

    def _added_steps(self, output: _Output) -> list[Step]:
        # The item joins the conversation the moment the client first hears of it, so
        # a truncate right after output_item.added already finds it.
        def mark_added(event: dict[str, Any]) -> None:
            output.added = True
            output.previous_item_id = self.host.announce(output.record)

        def announce(event: dict[str, Any]) -> None:
            event["previous_item_id"] = output.previous_item_id

        return [
            self._step(
                {
                    "type": "response.output_item.added",
                    "response_id": self.id,
                    "output_index": output.index,
                    "item": output.record.wire,
                },
                0.0,
                mark_added,
            ),
            self._step(
                {
                    "type": "conversation.item.added",
                    "previous_item_id": None,
                    "item": output.record.wire,
                },
                0.0,
                announce,
            ),
        ]

    def _message_steps(self, msg: _Message) -> list[Step]:
        steps = self._added_steps(msg)
        ref = {
            "response_id": self.id,
            "item_id": msg.record.id,
            "output_index": msg.index,
            "content_index": 0,
        }
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""} if self.audio_out else {"type": "text", "text": ""}
        )

        def part_added(event: dict[str, Any]) -> None:
            msg.part_added = True

        steps.append(
            self._step(
                {"type": "response.content_part.added", **ref, "part": part}, 0.0, part_added
            )
        )
        text_event = (
            "response.output_audio_transcript.delta"
            if self.audio_out
            else "response.output_text.delta"
        )
        sizes = split_audio(len(msg.audio), self._chunk_bytes(), self.pacing.fragment)
        texts = split_text(msg.text, max(1, len(sizes)), self.pacing.fragment)
        slots = max(len(sizes), 1)
        text_at: dict[int, list[str]] = {}
        for j, piece in enumerate(texts):
            text_at.setdefault(j * slots // max(len(texts), 1), []).append(piece)
        offset = 0
        prev_ms = 0.0
        text_pace = 0.0 if sizes else self.pacing.delta_ms / 1000 / self.pacing.realtime_factor
        for i in range(slots):
            for piece in text_at.get(i, []):
                steps.append(self._text_step(msg, text_event, ref, piece, text_pace))
            if i < len(sizes):
                size = sizes[i]
                chunk = msg.audio[offset : offset + size]
                offset += size
                delay = self._take_first_delay() + prev_ms / 1000 / self.pacing.realtime_factor
                prev_ms = size / (self._sample_bytes * self.rate / 1000)
                steps.append(self._audio_step(msg, ref, chunk, delay))
        return steps + self._message_done_steps(msg, ref, complete=True)

    def _chunk_bytes(self) -> int:
        width = self._sample_bytes
        return max(width, self.rate * self.pacing.delta_ms // 1000 * width)

    def _text_step(
        self, msg: _Output, kind: str, ref: dict[str, Any], piece: str, pace: float
    ) -> Step:
        def sent(event: dict[str, Any]) -> None:
            msg.sent_text += piece

        delay = self._take_first_delay() + pace
        return self._step({"type": kind, **ref, "delta": piece}, delay, sent)

    def _audio_step(self, msg: _Message, ref: dict[str, Any], chunk: bytes, delay: float) -> Step:
        def sent(event: dict[str, Any]) -> None:
            self.host.audio_emitted(msg.record, len(chunk))

        return self._step(
            {"type": "response.output_audio.delta", **ref, "delta": ""}, delay, sent, audio=chunk
        )

    def _message_done_steps(self, msg: _Message, ref: dict[str, Any], complete: bool) -> list[Step]:
        """Done events of a message; `complete=False` closes it as interrupted."""
        steps: list[Step] = []
        status = "completed" if complete else "incomplete"

        def finalise(event: dict[str, Any]) -> None:
            msg.done = True
            msg.record.wire["status"] = status
            ct = self.dialect.content_type(msg.record.content_kind or "output_audio")
            key = "transcript" if self.audio_out else "text"
            msg.record.wire["content"] = [{"type": ct, key: msg.sent_text}]
            event["item"] = msg.record.wire

        if not complete and not msg.part_added:
            return [
                self._step(
                    {
                        "type": "response.output_item.done",
                        "response_id": self.id,
                        "output_index": msg.index,
                        "item": msg.record.wire,
                    },
                    0.0,
                    finalise,
                )
            ]
        if self.audio_out:
            steps.append(self._step({"type": "response.output_audio.done", **ref}))
            steps.append(
                self._step(
                    {"type": "response.output_audio_transcript.done", **ref, "transcript": ""},
                    0.0,
                    self._fill("transcript", msg),
                )
            )
            part_key = "transcript"
        else:
            steps.append(
                self._step(
                    {"type": "response.output_text.done", **ref, "text": ""},
                    0.0,
                    self._fill("text", msg),
                )
            )
            part_key = "text"
        part_type = "audio" if self.audio_out else "text"
        steps.append(
            self._step(
                {
                    "type": "response.content_part.done",
                    **ref,
                    "part": {"type": part_type, part_key: ""},
                },
                0.0,
                self._fill_part(part_key, msg),
            )
        )
        steps.append(
            self._step(
                {
                    "type": "response.output_item.done",
                    "response_id": self.id,
                    "output_index": msg.index,
                    "item": msg.record.wire,
                },
                0.0,
                finalise,
            )
        )
        steps.append(self._step({"type": "conversation.item.done", "item": msg.record.wire}))
        return steps

    @staticmethod
    def _fill(key: str, out: _Output) -> Callable[[dict[str, Any]], None]:
        def fill(event: dict[str, Any]) -> None:
            event[key] = out.sent_text

        return fill

    @staticmethod
    def _fill_part(key: str, out: _Output) -> Callable[[dict[str, Any]], None]:
        def fill(event: dict[str, Any]) -> None:
            event["part"][key] = out.sent_text

        return fill

    def _call_steps(self, call: _Call) -> list[Step]:
        steps = self._added_steps(call)
        ref = {
            "response_id": self.id,
            "item_id": call.record.id,
            "output_index": call.index,
            "call_id": call.record.call_id,
        }
        pace = self.pacing.delta_ms / 1000 / self.pacing.realtime_factor / 4
        for piece in split_arguments(call.call.arguments, self.pacing.fragment):
            steps.append(
                self._text_step(call, "response.function_call_arguments.delta", ref, piece, pace)
            )
        return steps + self._call_done_steps(call, ref, complete=True)

    def _call_done_steps(self, call: _Call, ref: dict[str, Any], complete: bool) -> list[Step]:
        status = "completed" if complete else "incomplete"

        def finalise(event: dict[str, Any]) -> None:
            call.done = True
            call.record.wire["status"] = status
            call.record.wire["arguments"] = call.sent_text
            event["item"] = call.record.wire

        return [
            self._step(
                {
                    "type": "response.function_call_arguments.done",
                    **ref,
                    "name": call.call.name,
                    "arguments": "",
                },
                0.0,
                self._fill("arguments", call),
            ),
            self._step(
                {
                    "type": "response.output_item.done",
                    "response_id": self.id,
                    "output_index": call.index,
                    "item": call.record.wire,
                },
                0.0,
                finalise,
            ),
            self._step({"type": "conversation.item.done", "item": call.record.wire}),
        ]

    def _done_step(
        self, status: ResponseStatus, details: dict[str, Any] | None, reason: str | None
    ) -> Step:
        def done(event: dict[str, Any]) -> None:
            self.finished = True
            event["response"] = self.response_object(status, details)
            self.host.finished(self, status, reason)

        return self._step({"type": "response.done", "response": {}}, 0.0, done)

    # -- early end ------------------------------------------------------------------

    def cancel_plan(self, reason: str) -> list[Step]:
        """Closing events for what the client has seen so far, then `response.done`
        with status `cancelled` (reason `turn_detected` or `client_cancelled`)."""
        steps: list[Step] = []
        for output in self.outputs:
            if not output.added or output.done:
                continue
            if isinstance(output, _Message):
                ref = {
                    "response_id": self.id,
                    "item_id": output.record.id,
                    "output_index": output.index,
                    "content_index": 0,
                }
                steps += self._message_done_steps(output, ref, complete=False)
            elif isinstance(output, _Call):
                ref = {
                    "response_id": self.id,
                    "item_id": output.record.id,
                    "output_index": output.index,
                    "call_id": output.record.call_id,
                }
                steps += self._call_done_steps(output, ref, complete=False)
        details = {"type": "cancelled", "reason": reason}
        steps.append(self._done_step("cancelled", details, reason))
        return steps
