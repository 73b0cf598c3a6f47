"""keras-tuner's seed convention: its oracle reads a seed of 0 (or
``None``) as "draw a random seed", so a search seeded with 0 is unseeded."""

# NumPy's RandomState (BayesianOptimization) takes seeds below 2**32.
SEEDS = 2**32 - 1


def tuner_seed(seed):
    """The keras-tuner seed of a user seed: deterministic, never 0, below
    2**32 (``seed + 1`` for seeds 0 to 2**32 - 2)."""
    return int(seed) % SEEDS + 1
