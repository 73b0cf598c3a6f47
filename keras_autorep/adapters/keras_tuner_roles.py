"""keras-tuner's distributed role of this process, as keras-tuner itself
reads it from ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT``."""

from keras_tuner.src.distribute import utils


def tuner_role():
    """``"chief"`` (serves the oracle, runs no trial), ``"worker"`` (runs
    the trials the chief hands out) or ``None`` (a search on its own)."""
    if not utils.has_chief_oracle():
        return None
    return "chief" if utils.is_chief_oracle() else "worker"
