"""Tool calls assembled from whichever events the server happened to send.

Why a tracker: a call's name and `call_id` arrive in `response.output_item.added`, its
arguments in `response.function_call_arguments.done`, and a server that skips either
still lists the finished call in `response.done.output`. The Call must see each call
exactly once, complete, whatever the order; this class is that rule and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

from telephony_agent.realtime.bounded import BoundedSet
from telephony_agent.realtime.events import FunctionCall

#: Bounded memories: long calls must not grow state without limit.
_MAX_ITEMS = 256
_MAX_CALL_IDS = 256


class FunctionCallTracker:
    """Emits each function call once per `call_id`, only once it has a name."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._emitted = BoundedSet(_MAX_CALL_IDS)
        self._unnamed: dict[str, FunctionCall] = {}

    def output_item_added(self, obj: dict[str, Any]) -> None:
        """Remember the call id and name a `function_call` output item announces."""
        item = obj.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        item_id, call_id, name = item.get("id"), item.get("call_id"), item.get("name")
        if isinstance(item_id, str) and isinstance(call_id, str) and isinstance(name, str):
            self._items[item_id] = (call_id, name)
            while len(self._items) > _MAX_ITEMS:
                self._items.popitem(last=False)

    def complete(self, call: FunctionCall) -> FunctionCall | None:
        """Fill in what the event lacked; emit each call_id once, only with a name."""
        tracked = self._items.get(call.item_id)
        if tracked is not None:
            call_id = call.call_id or tracked[0]
            call = dataclasses.replace(call, call_id=call_id, name=call.name or tracked[1])
        key = call.call_id or call.item_id
        if key in self._emitted:
            return None
        if not call.name:
            self._unnamed[key] = call  # output_item.done or response.done will name it
            return None
        self._emitted.add(key)
        self._unnamed.pop(key, None)
        return call

    def from_response_done(self, response_id: str, obj: dict[str, Any]) -> list[FunctionCall]:
        """Calls that only `response.done.output` completed (done events missed)."""
        response = obj.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        calls: list[FunctionCall] = []
        for item in output if isinstance(output, list) else []:
            if not isinstance(item, dict) or item.get("type") != "function_call":
                continue
            if item.get("status") not in (None, "completed"):
                continue
            raw = FunctionCall(
                response_id=response_id,
                item_id=str(item.get("id") or ""),
                call_id=str(item.get("call_id") or ""),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or ""),
            )
            key = raw.call_id or raw.item_id
            if not raw.name and key in self._unnamed:
                raw = dataclasses.replace(raw, arguments=self._unnamed[key].arguments)
            call = self.complete(raw)
            if call is not None:
                calls.append(call)
        self._unnamed.clear()
        return calls

    def connection_lost(self) -> None:
        """The server's items are gone with its connection; emitted ids stay remembered."""
        self._items.clear()
        self._unnamed.clear()
