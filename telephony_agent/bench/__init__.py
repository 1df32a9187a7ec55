"""`telephony-agent bench`: the agent under continuous two-way audio, measured end to end.

An upper layer, like `commands/`: it starts the local backend, the agent (or a naive
bridge for comparison) and synthetic SIP callers as separate processes and measures
them from outside. Nothing below the CLI imports it.

* `speech` — what the callers say, and the ideal rendering of what the model says;
* `measures` — pacing, loss, latency and fidelity arithmetic (pure, tested);
* `caller_sip`, `caller` — the synthetic callers (a sans-I/O dialog and the process);
* `naive_bridge` — the deliberately naive bridge `--baseline` runs;
* `processes` — starting the backend and the agents, CPU and memory from /proc;
* `harness` — one run: ramp, hold, collect; `report` — the row, the table, JSON;
* `search` — `--find-max`.
"""
