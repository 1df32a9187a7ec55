"""An answer cut off by a lost Realtime connection: keep what was heard, drop the rest.

Why: the replacement session will not continue the lost answer, and the audio already
received ends mid-word wherever the connection died. So the caller's playout stops at
once (as for a barge-in), the transcript line is cut to what was played, and the
session is told how much of each item was heard: its recap then says what the agent
actually said, and whether the caller's question still needs an answer.
"""

from __future__ import annotations

from telephony_agent.call.lines import AgentLines, Line
from telephony_agent.call.playback import AnyPlayback
from telephony_agent.realtime.client import RealtimeSession

__all__ = ["cut_answer"]


def cut_answer(
    playback: AnyPlayback,
    agent_lines: AgentLines,
    session: RealtimeSession,
    items: list[str],
    now_ms: int,
) -> list[Line]:
    """Stop playing `items` (one lost response's), report what was heard, return lines.

    A response that had sent no audio yet leaves playback alone: what is playing then
    belongs to an earlier, complete answer."""
    if not items:
        return []
    playback.interrupt(items[-1])
    lines: list[Line] = []
    for item_id in items:
        played = playback.played_ms(item_id)
        received = playback.received_ms(item_id)
        session.truncate(item_id, min(played, received))
        lines.extend(agent_lines.cut(item_id, played, received, now_ms))
    return lines
