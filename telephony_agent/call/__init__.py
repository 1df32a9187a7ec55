"""The Call bridge: one media leg coupled with one Realtime session."""
