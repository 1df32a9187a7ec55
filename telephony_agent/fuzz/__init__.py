"""Fuzzing the parsers that face the network and the operator.

Coverage-guided targets for atheris (the ``fuzz`` extra), one per parser, each
runnable as ``python -m telephony_agent.fuzz.<target>`` with a seed corpus taken
from the tests (`corpus/<target>/`): ``sip_message``, ``sdp``, ``rtp`` (RTP,
RTCP and RFC 4733), ``realtime_events`` and ``settings``. The checks themselves
live in `targets.py` and need no atheris, so the tests replay the corpus and
every past finding through them. `wire.py` mutates whole SIP requests for
fuzzing a running server over real sockets.
"""
