"""The recipes: presets, settings, run folder, stages, reporting, CLI.

``recipes/cifar10.py`` and its siblings, like the ``keras-autorep-*``
console scripts, call ``entry_points``: ``cli.main`` (one parser and one
``Settings`` record for every dataset and method) and, for CryptoNAS,
``cli.cryptonas_main``. ``recipe`` prepares a run and runs the stages of
its method's family from the registry ``keras_autorep.methods.METHODS``:
``stages`` (teacher-based methods) or ``architecture`` (CryptoNAS),
sharing the data, run folder and fit loop of ``run`` and the sanity check,
report and publishing of ``reporting``.
"""
