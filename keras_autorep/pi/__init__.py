"""Private inference: what an exported model costs, predicted and measured.

``cost_report(export)`` predicts, per calibrated protocol
(``keras_autorep.costs``), the
communication, rounds and latency of an export next to its all-ReLU
version, with the published garbled-circuit figures (``garbled``) as a
third family; ``measure(export, runtime, images)`` runs a real two-party
inference (``runtimes``) and writes ``pi_measured.json``.
``python -m keras_autorep.pi cost|measure DIR`` does both from the command
line; ``python -m keras_autorep.pi setup`` builds the runtimes'
virtualenvs (``envs``). ``cost_budget("3.7MB", model, protocol)``
resolves a budget in bytes or milliseconds against a model (``budget``).
"""

from keras_autorep.costs import (
    Network,
    Prediction,
    Workload,
    predict,
    protocols,
)
from keras_autorep.pi.budget import cost_budget
from keras_autorep.pi.garbled import (
    GC_CLIENT_EVAL_MS_PER_RELU,
    GC_CLIENT_GARBLE_MS_PER_RELU,
    GC_CLIENT_STORAGE_BYTES_PER_RELU,
    GC_SERVER_EVAL_MS_PER_RELU,
    GC_SERVER_GARBLE_MS_PER_RELU,
    PASNET_RELU_SLOPE,
    PASNET_X2_SLOPE,
    POLYNOMIAL_TO_RELU_RATIO,
    SOURCES,
    PICost,
    estimate_cost,
)
from keras_autorep.pi.measure import measure, read_measured
from keras_autorep.pi.report import CostReport, cost_report
from keras_autorep.pi.runtimes import RUNTIMES
from keras_autorep.pi.workload import onnx_workload

__all__ = [
    "GC_CLIENT_EVAL_MS_PER_RELU",
    "GC_CLIENT_GARBLE_MS_PER_RELU",
    "GC_CLIENT_STORAGE_BYTES_PER_RELU",
    "GC_SERVER_EVAL_MS_PER_RELU",
    "GC_SERVER_GARBLE_MS_PER_RELU",
    "PASNET_RELU_SLOPE",
    "PASNET_X2_SLOPE",
    "POLYNOMIAL_TO_RELU_RATIO",
    "RUNTIMES",
    "SOURCES",
    "CostReport",
    "Network",
    "PICost",
    "Prediction",
    "Workload",
    "cost_budget",
    "cost_report",
    "estimate_cost",
    "measure",
    "onnx_workload",
    "predict",
    "protocols",
    "read_measured",
]
