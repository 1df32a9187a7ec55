"""A tool module whose import fails, as a module with a bad top-level line would."""

from __future__ import annotations

raise RuntimeError("cannot connect to the booking database")
