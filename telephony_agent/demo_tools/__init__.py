"""Tools the offline demo's agent calls, shipped so the demo needs nothing but this package.

They are ordinary Python tools (`python = "telephony_agent.demo_tools.booking:..."` in a
profile), written the way an operator would write their own, so they double as an
example of one.
"""
