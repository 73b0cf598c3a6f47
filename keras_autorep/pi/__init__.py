"""Private-inference cost model (see ``keras_autorep.pi.cost``)."""

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
    count_totals,
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
    "count_totals",
    "estimate_cost",
]
