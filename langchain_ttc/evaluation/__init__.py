"""The evaluation harness behind ``ttc eval``: datasets, grading, subsampled scaling curves, reports."""
