"""The `[[tools]]` of a settings file, loaded once and bound to each call's registry.

Why load once and bind per call: imports and secrets are resolved when the service
starts (so a mistake stops the start, not a call), while a call's tools must know that
call's id, numbers and profile. Binding copies the shared built-in registry and adds
handlers that close over a `CallInfo`, so no call can see or change another call's tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from telephony_agent.call.tools import Tool, ToolContext, ToolHandler, ToolRegistry
from telephony_agent.errors import ConfigError
from telephony_agent.tools.context import CallInfo
from telephony_agent.tools.definitions import ToolDefinition
from telephony_agent.tools.python_tool import load_python_tool
from telephony_agent.tools.webhook import WebhookClient, load_webhook_tool

#: Extra registry time on top of a webhook's own budget, so the webhook's precise error
#: ("did not answer in 5 s") wins over the registry's generic timeout.
REGISTRY_MARGIN_S = 1.0


class _BusinessTool(Protocol):
    definition: ToolDefinition

    async def __call__(self, arguments: Mapping[str, Any], call: CallInfo) -> str: ...


class BusinessTools:
    """All [[tools]] of a settings file, loaded once at start (imports done, secrets read)."""

    def __init__(
        self, tools: Mapping[str, tuple[_BusinessTool, float]], client: WebhookClient
    ) -> None:
        self._tools = dict(tools)
        self._client = client

    @classmethod
    def load(
        cls, definitions: Sequence[ToolDefinition], environ: Mapping[str, str]
    ) -> BusinessTools:
        """Import every Python tool and read every webhook secret; ConfigError on a fault."""
        client = WebhookClient()
        tools: dict[str, tuple[_BusinessTool, float]] = {}
        for definition in definitions:
            if definition.webhook is not None:
                webhook = load_webhook_tool(definition, environ, client)
                tools[definition.name] = (webhook, webhook.budget_s + REGISTRY_MARGIN_S)
            else:
                tools[definition.name] = (load_python_tool(definition), definition.timeout_s)
        return cls(tools, client)

    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def definition(self, name: str) -> ToolDefinition:
        return self._entry(name)[0].definition

    def registry_for(
        self, names: Sequence[str], call: CallInfo, base: ToolRegistry
    ) -> ToolRegistry:
        """A copy of `base` plus the named business tools, bound to `call`."""
        registry = base.copy()
        for name in names:
            tool, timeout_s = self._entry(name)
            registry.register(Tool(tool.definition.spec, _bind(tool, call), timeout_s=timeout_s))
        return registry

    async def aclose(self) -> None:
        """Close the shared HTTP client; call once when the service stops."""
        await self._client.aclose()

    def _entry(self, name: str) -> tuple[_BusinessTool, float]:
        entry = self._tools.get(name)
        if entry is None:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ConfigError(f"tool {name!r} is not defined in [[tools]] (defined: {known})")
        return entry


def _bind(tool: _BusinessTool, call: CallInfo) -> ToolHandler:
    async def handler(arguments: dict[str, Any], _ctx: ToolContext) -> str:
        # The live Call is ignored on purpose: business tools only learn what CallInfo holds.
        return await tool(arguments, call)

    return handler
