"""The ReLU-reduction methods, one function each, one signature:
``train_X(teacher, budget, train_data, val_data=None, *, counts=None,
epochs, lr, ..., callbacks, verbose) -> student``.

* ``train_autorep``: AutoReP (selectors with DaPa polynomials, budget
  loss);
* ``train_snl``: SNL (L1 soft masks, binarised, fine-tuned);
* ``train_senet``: SENet (sensitivity counts, mask identification,
  fine-tuning with attention transfer).

Each returns a student with ``ReLUSelector`` sites;
``harden(student, budget)`` gives the inference model.
"""

from keras_autorep.methods.autorep import train_autorep
from keras_autorep.methods.senet import train_senet
from keras_autorep.methods.snl import train_snl

METHODS = {
    "autorep": train_autorep,
    "snl": train_snl,
    "senet": train_senet,
}

__all__ = ["METHODS", "train_autorep", "train_senet", "train_snl"]
