"""Fuzz target: Realtime server events as the protocol reads them.

python -m telephony_agent.fuzz.realtime_events [libFuzzer flags] [CORPUS_DIR]
"""

from telephony_agent.fuzz.runner import main

if __name__ == "__main__":
    main("realtime_events")
