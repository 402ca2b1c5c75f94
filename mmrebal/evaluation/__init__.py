"""Evaluation: classification metrics, the batched no-grad scoring pass and what it yields
(``ScoreResult``), and the sampler-independent scores read from predictions (KL to uniform,
prediction similarity, DUS Eq. 3's cumulative discrepancy)."""
