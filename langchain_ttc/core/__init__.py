"""Layer 1, the core: plain data and pure functions, no I/O, no models, no LangGraph.

- :mod:`.types`: requests, completions, scores, usage, candidates, results;
- :mod:`.aggregation`: step scores to one score; :mod:`.answers`: answer keys (extract, equivalence);
- :mod:`.tool_calls`: the answer key of assistant turns that call tools (agent actions);
- :mod:`.voting`: majority vote, best-of-N, weighted best-of-N over candidates;
- :mod:`.search`: beam bookkeeping of step-level search; :mod:`.tree`: the search tree as data;
- :mod:`.refine` and :mod:`.prompts`: self-refinement's pure logic and prompts;
- :mod:`.seeds`: one random stream per draw.
"""
