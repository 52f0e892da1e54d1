"""Jepsen-style verification (issue 5): workloads, a nemesis, two executors
(the simulator and real processes) and the checkers of ``ringkv.check``.
``ringkv verify`` is the command line; docs/guarantees.md the results."""
