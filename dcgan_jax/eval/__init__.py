"""Sample-quality evaluation: feature networks (our per-dataset classifier), FID, coverage, precision/recall, and
the evaluator the trainer calls (`classifier`, `metrics`, `evaluation`)."""
