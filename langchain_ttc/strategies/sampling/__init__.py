"""Sample-then-select strategies: majority vote, best-of-N, weighted best-of-N."""
