"""Training the query rewriter with DPO (the QTA recipe): `QTATrainer` and its config.

Example:
    .. code-block:: python

        from qta_integrations.training import QTATrainer, QTATrainingConfig

        trainer = QTATrainer(tools="tools.json", config=QTATrainingConfig(seed=0))
        retriever = trainer.fit("train_queries.jsonl", output_dir="qta-adapter")
"""

from qta_integrations.training.config import QTATrainingConfig
from qta_integrations.training.pairs import (
    GradedCandidate,
    PreferencePair,
    TrainingExample,
    grade_candidates,
    load_examples,
    select_pairs,
)
from qta_integrations.training.trainer import (
    NoPreferencePairsError,
    NoPreferencePairsWarning,
    QTATrainer,
)

__all__ = [
    "GradedCandidate",
    "NoPreferencePairsError",
    "NoPreferencePairsWarning",
    "PreferencePair",
    "QTATrainer",
    "QTATrainingConfig",
    "TrainingExample",
    "grade_candidates",
    "load_examples",
    "select_pairs",
]
