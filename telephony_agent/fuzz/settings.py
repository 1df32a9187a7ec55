"""Fuzz target: the settings file, loaded with every check.

python -m telephony_agent.fuzz.settings [libFuzzer flags] [CORPUS_DIR]
"""

from telephony_agent.fuzz.runner import main

if __name__ == "__main__":
    main("settings")
