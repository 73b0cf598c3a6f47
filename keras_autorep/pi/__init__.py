"""Private inference: the cost of an exported model.

``cost_report(model_or_spec)`` prices the non-linear layers
(``keras_autorep.pi.cost``); ``python -m keras_autorep.pi cost DIR``
prints (or with ``--write`` saves as ``pi_cost.txt``) the report of an
exported version folder.
"""

from keras_autorep.pi.cost import (
    GC_CLIENT_EVAL_MS_PER_RELU,
    GC_CLIENT_GARBLE_MS_PER_RELU,
    GC_CLIENT_STORAGE_BYTES_PER_RELU,
    GC_SERVER_EVAL_MS_PER_RELU,
    GC_SERVER_GARBLE_MS_PER_RELU,
    PASNET_RELU_SLOPE,
    PASNET_X2_SLOPE,
    POLYNOMIAL_TO_RELU_RATIO,
    SOURCES,
    CostReport,
    PICost,
    cost_report,
    estimate_cost,
)

__all__ = [
    "GC_CLIENT_EVAL_MS_PER_RELU",
    "GC_CLIENT_GARBLE_MS_PER_RELU",
    "GC_CLIENT_STORAGE_BYTES_PER_RELU",
    "GC_SERVER_EVAL_MS_PER_RELU",
    "GC_SERVER_GARBLE_MS_PER_RELU",
    "PASNET_RELU_SLOPE",
    "PASNET_X2_SLOPE",
    "POLYNOMIAL_TO_RELU_RATIO",
    "SOURCES",
    "CostReport",
    "PICost",
    "cost_report",
    "estimate_cost",
]
