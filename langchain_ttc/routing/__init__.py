"""Compute-optimal routing: difficulty estimates, the strategy table, and its calibration.

- :mod:`.difficulty`: difficulty of a problem from pilot samples (PRM score, answer agreement).
- :mod:`.table`: the versioned (difficulty bin, budget) -> strategy table, checked on load.
- :mod:`.fit`: choosing the best strategy per bin and budget from calibration records (pure).
- :mod:`.calibrate`: running the candidate strategies on a calibration set.
- :mod:`.command`: the ``ttc calibrate`` command (run or reload records, fit, write table and plot).

The graph itself is :func:`langchain_ttc.strategies.compute_optimal.create_compute_optimal_graph`.
"""
