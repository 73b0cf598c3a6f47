"""Architecture search under a ReLU budget (CryptoNAS, with keras-tuner)."""

from keras_autorep.search.cryptonas import (
    CryptoNASHyperModel,
    OverBudgetError,
    make_tuner,
    trial_summaries,
)

__all__ = [
    "CryptoNASHyperModel",
    "OverBudgetError",
    "make_tuner",
    "trial_summaries",
]
