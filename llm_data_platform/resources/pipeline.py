"""The tunable thresholds of the graph, as one resource: every asset and check that needs a
setting receives it here (built from ``Settings`` in ``definitions.py``), never from the
environment."""

import dagster as dg


class PipelineSettings(dg.ConfigurableResource):
    """Quality bars, split and budget of the training side; chunk sizes; the index gate."""

    min_quality: float = 0.5  # messages scoring below are dropped from conversations_clean
    min_rating: int = 4  # lowest feedback rating that makes a training example
    validation_fraction: float = 0.1
    training_token_budget: int = 2_000_000  # max tokens in one weekly batch
    min_training_examples: int = 10  # fewer train examples in a week fail its batch check
    training_template: str = "python_docs_assistant@1"  # prompt_templates/<id>/v<n>.json
    chunk_max_tokens: int = 200  # in the embedding model's word pieces
    chunk_overlap_tokens: int = 30
    eval_min_hit_at_5: float = 0.8  # a new index version needs these to go live
    eval_min_mrr_at_10: float = 0.5
    eval_max_regression: float = 0.02  # a new version may score this much below the live one
    expectations_engine: str = "arrow"  # or great_expectations (same rules, ~4 s to import)
