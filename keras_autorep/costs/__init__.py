"""What private inference costs: workloads, the calibration, budgets.

Pure data and arithmetic, below every Keras layer so that training can
price a model while it trains:

* ``workload``: ``Workload`` (per-example op counts per op class) and the
  cost ``features`` it gives;
* ``model``: the calibrated coefficients per protocol
  (``calibration.json``), ``predict`` (bytes, rounds, compute seconds),
  ``Network`` and latency;
* ``sites``: the workload of one hardened site per replacement form
  (``poly2``, ``poly1``, ``identity``);
* ``budget``: ``CostBudget``, a cost budget resolved against a model.
"""

from keras_autorep.costs.budget import CostBudget, SiteCost
from keras_autorep.costs.model import (
    NETWORKS,
    CalibrationError,
    Network,
    Prediction,
    calibration,
    calibration_path,
    predict,
    protocols,
    provenance,
)
from keras_autorep.costs.sites import FORMS, site_workload
from keras_autorep.costs.workload import FEATURES, Workload, features

__all__ = [
    "FEATURES",
    "FORMS",
    "NETWORKS",
    "CalibrationError",
    "CostBudget",
    "Network",
    "Prediction",
    "SiteCost",
    "Workload",
    "calibration",
    "calibration_path",
    "features",
    "predict",
    "protocols",
    "provenance",
    "site_workload",
]
