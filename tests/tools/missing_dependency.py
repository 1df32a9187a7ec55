"""A tool module that needs a package which is not installed."""

from __future__ import annotations

import importlib

importlib.import_module("telephony_agent_no_such_dependency")
