"""Step-level search strategies: beam search and DVTS on one shared skeleton (:mod:`.stepwise`)."""
