"""The recipes: presets, settings, run folder, stages, reporting, CLI.

``recipes/cifar10.py`` and its siblings, like the ``keras-autorep-*``
console scripts, call ``entry_points``: ``cli.main`` and, for CryptoNAS,
``cli.cryptonas_main``. The stages are plain functions over a prepared
``Recipe`` (``stages``) or ``CryptoNASRecipe`` (``cryptonas``), sharing the
data, run folder, fit loop and publishing of ``run`` and ``reporting``.
"""
