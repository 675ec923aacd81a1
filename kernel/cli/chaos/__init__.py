"""Chaos drills (``ronctl chaos``): restart storms with a verified no-loss report, bus floods.

Small modules, one job each:

- ``http``: a minimal trio HTTP/1.1 client on h11 (the drill's only way to talk to a node);
- ``target``: the node under test, started by the drill or reached at ``--admin URL``;
- ``schedule``: the seeded fault schedule;
- ``workload``: the seeded gateway workload and its ledger of acknowledged writes;
- ``storm``: the drill engine (workload + faults + probes, live progress);
- ``verify``: the checks after the storm (read-back, restarts, quarantines, processes);
- ``procs``: what /proc says about the node's processes;
- ``report``: the JSON report and the summary table; ``plot``: the timeline PNG;
- ``flood``: the bus-flood drill.
"""
