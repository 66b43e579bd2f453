"""Compute-optimal routing: difficulty estimates from pilots, the strategy table, and the router graph.

- :mod:`.difficulty`: difficulty of a problem from pilot samples (PRM score, answer agreement);
- :mod:`.table`: the versioned (difficulty bin, budget) -> strategy table, checked on load;
- :mod:`.compute_optimal`: the router graph. Fitting a table is calibration
  (:mod:`langchain_ttc.evaluation.calibrate`, :mod:`langchain_ttc.evaluation.fit`).
"""
