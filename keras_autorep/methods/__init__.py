"""The ReLU-reduction methods.

Functions, one signature: ``train_X(teacher, budget, train_data,
val_data=None, *, counts=None, epochs, lr, ..., callbacks, verbose) ->
student``:

* ``train_autorep``: AutoReP (selectors with DaPa polynomials, budget
  loss);
* ``train_snl``: SNL (L1 soft masks, binarised, fine-tuned);
* ``train_senet``: SENet (sensitivity counts, mask identification,
  fine-tuning with attention transfer).

Each returns a student with ``ReLUSelector`` sites;
``harden(student, budget)`` gives the inference model. The arguments they
share:

* ``teacher``: the trained all-ReLU Sequential or functional model
  (logits); it is not modified (SNL and SENet only freeze it);
* ``budget``: the ReLU budget (anything ``parse_budget`` accepts; AutoReP
  also a ``CostBudget``, ``keras_autorep.pi.cost_budget``);
* ``train_data``, ``val_data``: a ``tf.data.Dataset``, a ``PyDataset`` or
  ``(x, y)`` arrays (integer labels); ``val_data`` optional;
* ``batch_size``: the batch size of array data;
* ``metrics``: compiled metrics (default ``["accuracy"]``);
* ``verbose``: ``fit`` verbosity.

``METHODS`` is the registry the recipes and benchmarks orchestrate:
``{name: Method}`` units that know their phases, student, learning-rate
plan and report fields (``keras_autorep.methods.method``), CryptoNAS
(architecture search, no teacher) included.
"""

from keras_autorep.methods.autorep import AutoReP, train_autorep
from keras_autorep.methods.cryptonas import CryptoNAS
from keras_autorep.methods.method import Method, Plan, TeacherMethod
from keras_autorep.methods.senet import SENet, train_senet
from keras_autorep.methods.snl import SNL, train_snl

METHODS = {method.name: method
           for method in (AutoReP(), SNL(), SENet(), CryptoNAS())}

__all__ = [
    "METHODS",
    "Method",
    "Plan",
    "TeacherMethod",
    "train_autorep",
    "train_senet",
    "train_snl",
]
