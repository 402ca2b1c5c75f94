"""Evaluation: classification metrics and the batched no-grad scoring pass."""
