"""What was said so far, kept to be replayed to a replacement Realtime session.

Why: a provider's conversation lives only as long as its websocket. When the session is
replaced (a lost connection, an expired session), the new one knows nothing, so the
client replays the last lines of the conversation as one message. The recap is bounded
(lines and characters): a long call must not grow state or the replayed message.
"""

from __future__ import annotations

from collections import deque

HEADER = "Conversation so far:"


class Recap:
    """The last `max_lines` lines, rendered newest-first within `max_chars`."""

    def __init__(self, max_lines: int = 12, max_chars: int = 4000) -> None:
        self.max_chars = max_chars
        self._lines: deque[tuple[str, str]] = deque(maxlen=max(0, max_lines))

    def add(self, speaker: str, text: str) -> None:
        """Add one line; blank text is not a line."""
        if text.strip():
            self._lines.append((speaker, text.strip()))

    @property
    def lines(self) -> list[tuple[str, str]]:
        return list(self._lines)

    def text(self) -> str | None:
        """The header and the newest lines that fit the character budget; None if none."""
        lines: list[str] = []
        budget = self.max_chars
        for speaker, text in reversed(self._lines):
            line = f"{speaker}: {text}"
            if len(line) + 1 > budget:
                break
            lines.append(line)
            budget -= len(line) + 1
        if not lines:
            return None
        return HEADER + "\n" + "\n".join(reversed(lines))
