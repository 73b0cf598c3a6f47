"""The model graph: what a site is, counting, rewriting, conversion, masks.

* ``sites``: the one definition of a non-linear site (``site_of``,
  ``sites``, ``selectors``);
* ``counting``: ``count_relus`` and ``LiveReLUCount`` (the count during
  training);
* ``rewrite``: ``GraphRewriter``, the rewrite every conversion uses, and
  ``copy_weights`` (weights and the state Keras derives from them);
* ``convert``: ``replace_relus`` (ReLU -> selector), ``harden``
  (selector -> ``PartialReLU``), ``final_masks``, ``gather_form`` (the
  PI form of a hardened model);
* ``masks``: setting, choosing and freezing selector masks;
* ``costing``: a model's predicted PI cost under a ``CostBudget``
  (``LiveCost`` during training) and landing masks on it;
* ``fold``: affine replacements folded into the linear layer that feeds
  them;
* ``topology``: who feeds whom among a model's layers;
* ``transforms``: CryptoNAS ReLU pruning and shuffling.
"""

from keras_autorep.graph.convert import (
    final_masks,
    gather_form,
    harden,
    needs_model_xla,
    replace_relus,
)
from keras_autorep.graph.costing import (
    LiveCost,
    land_cost_masks,
    predicted_cost,
    site_forms,
)
from keras_autorep.graph.counting import (
    LiveReLUCount,
    ReLUCount,
    SiteCount,
    count_relus,
)
from keras_autorep.graph.fold import fold_linear_sites, foldable_sites
from keras_autorep.graph.masks import (
    check_counts,
    current_masks,
    freeze_masks,
    land_masks,
    random_masks,
    selector_budget,
    set_masks,
    site_sizes,
    top_masks,
)
from keras_autorep.graph.rewrite import (
    GraphRewriter,
    check_rewritable,
    copy_weights,
)
from keras_autorep.graph.sites import Site, selectors, site_of, sites
from keras_autorep.graph.transforms import (
    prunable_relus,
    prune_relus,
    shufflable_relus,
    shuffle_relus,
)

__all__ = [
    "GraphRewriter",
    "LiveCost",
    "LiveReLUCount",
    "ReLUCount",
    "Site",
    "SiteCount",
    "check_counts",
    "check_rewritable",
    "copy_weights",
    "count_relus",
    "current_masks",
    "final_masks",
    "fold_linear_sites",
    "foldable_sites",
    "freeze_masks",
    "gather_form",
    "harden",
    "land_cost_masks",
    "land_masks",
    "needs_model_xla",
    "predicted_cost",
    "prunable_relus",
    "prune_relus",
    "random_masks",
    "replace_relus",
    "selector_budget",
    "selectors",
    "set_masks",
    "shufflable_relus",
    "shuffle_relus",
    "site_forms",
    "site_of",
    "site_sizes",
    "sites",
    "top_masks",
]
