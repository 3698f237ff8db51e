"""Benchmarks: rp-executor side by side with its peers, in one command.

``python -m benchmarks [--quick] [--only startup,fn_tput,...] [--json-out PATH]``
runs each (measurement, peer) pair in its own fresh subprocess
(:mod:`benchmarks.child`) under a time limit, prints a table (name, value, unit,
peer values, ratio, target, pass) and, last, one JSON line with every number, the
ratios and pass/fail per target.

Modules: :mod:`~benchmarks.plan` (what is measured), :mod:`~benchmarks.driver`
(running and collecting), :mod:`~benchmarks.report` (ratios, targets, table),
``peer_*`` (one module per system measured), :mod:`~benchmarks.payloads` (the
no-op every peer runs) and :mod:`~benchmarks.timing`.
"""
