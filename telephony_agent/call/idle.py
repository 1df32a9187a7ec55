"""An idle caller: after a silence the agent asks if anyone is there, then says goodbye.

Why locally and not with the provider's `idle_timeout_ms`: Yandex does not support it,
and a call that sits in silence costs a line and a model session. The watch counts
media time only while nobody speaks (the caller is not talking and no agent audio is
queued or being generated); any caller speech or key press resets the reprompt count.

Sans-I/O: the Call tells it what happens and asks it once per tick what to do.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_GOODBYE", "DEFAULT_REPROMPT", "IdleAction", "IdleWatch"]

IdleAction = Literal["reprompt", "goodbye"]

#: What the model is asked to say to a silent caller (`[agent]` may change both).
DEFAULT_REPROMPT = "Ask briefly whether the caller is still there."
DEFAULT_GOODBYE = (
    "The line has stayed silent: say briefly that you are ending the call, and goodbye."
)


class IdleWatch:
    def __init__(self, after_ms: int, max_reprompts: int) -> None:
        self.after_ms = after_ms
        self.max_reprompts = max_reprompts
        self.reprompts = 0
        self._since: int | None = None
        self._caller_speaking = False

    def caller_started(self) -> None:
        self._caller_speaking = True
        self._since = None
        self.reprompts = 0

    def caller_stopped(self) -> None:
        self._caller_speaking = False
        self._since = None

    def caller_pressed(self) -> None:
        self._since = None
        self.reprompts = 0

    def tick(self, now_ms: int, agent_quiet: bool) -> IdleAction | None:
        """One media tick; returns what to do when the silence has lasted long enough."""
        if self._caller_speaking or not agent_quiet:
            self._since = None
            return None
        if self._since is None:
            self._since = now_ms
            return None
        if now_ms - self._since < self.after_ms:
            return None
        self._since = None
        self.reprompts += 1
        return "goodbye" if self.reprompts > self.max_reprompts else "reprompt"
