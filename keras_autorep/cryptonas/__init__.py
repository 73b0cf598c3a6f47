"""CryptoNAS (Ghodsi et al., NeurIPS 2020) on the same ReLU counting.

* ReLU balancing: ``balanced_width``, ``balanced_network``, ``relu_network``;
* ReLU pruning and shuffling: ``prune_relus``, ``shuffle_relus`` (and the
  analyses ``prunable_relus``, ``shufflable_relus``);
* architecture search under the budget: ``CryptoNASHyperModel``,
  ``make_tuner``, ``trial_summaries``, ``OverBudgetError``.

``recipes/cryptonas.py`` (``keras_autorep.cryptonas.recipe``) runs search,
training and export from the command line.
"""

from keras_autorep.cryptonas.balancing import (
    balanced_network,
    balanced_width,
    relu_network,
)
from keras_autorep.cryptonas.search import (
    CryptoNASHyperModel,
    OverBudgetError,
    make_tuner,
    trial_summaries,
)
from keras_autorep.cryptonas.transforms import (
    prunable_relus,
    prune_relus,
    shufflable_relus,
    shuffle_relus,
)

__all__ = [
    "CryptoNASHyperModel",
    "OverBudgetError",
    "balanced_network",
    "balanced_width",
    "make_tuner",
    "prunable_relus",
    "prune_relus",
    "relu_network",
    "shufflable_relus",
    "shuffle_relus",
    "trial_summaries",
]
