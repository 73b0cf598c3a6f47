"""Range control of a student's polynomials in training.

A DaPa polynomial approximates its activation on the range it is fitted
for, ``mean +- RANGE_STDS * std`` of its input per channel (its layer's
running statistics, ``PolynomialActivation.fitted_range``); outside it a
quadratic grows without bound, and a stack of them overflows on inputs
brighter than the training images. In each step the trainer measures
every site with a DaPa polynomial (``SiteRange``): the share of the
polynomial's inputs (its removed positions) outside the range is logged
per site and over all sites (``out_of_range``), and ``Stability`` adds
the mechanisms that keep the inputs in range:

* ``range_penalty``: ``RangePenalty``, the weight of ``mean(removed *
  d^10)`` with ``d = |x - mean| / (RANGE_STDS * std)`` (1 at the range's
  edge: small inside, steep beyond);
* ``brightness``, ``contrast``: ``InputScaling``, a random half of every
  training batch brightened and contrast-stretched beyond [0, 1] by
  factors up to these, so that the statistics, the fits and the network
  see inputs brighter than the data's;
* the polynomials' own options (``ReLUSelector(clip_range=...,
  max_quadratic=...)``) act in the layers.
"""

import dataclasses

import keras
from keras import ops

# The share of each training batch that ``InputScaling`` transforms.
SCALED_SHARE = 0.5
# The power of the range penalty, and the deviation it counts at most (a
# larger one, from a model that already overflows, would overflow it).
PENALTY_POWER = 10
MAX_DEVIATION = 100.0


def ranged_sites(sites):
    """The selectors whose removed positions compute a DaPa polynomial
    (an identity has no fitted range)."""
    return [site for site in sites if site.fit == "dapa"]


@dataclasses.dataclass
class SiteRange:
    """One site's polynomial inputs against its fitted range in one step.

    Attributes:
        deviation: ``|x - mean| / radius`` per element (1 at the range's
            edge), float32, the shape of the site's input.
        removed: ``1 - mask`` (no gradient), broadcastable to it: where
            the polynomial is computed.
    """

    deviation: object
    removed: object

    @classmethod
    def of(cls, site, inputs):
        """The ``SiteRange`` of ``site`` on its input ``inputs``."""
        center, radius = site.polynomial.fitted_range()
        deviation = ops.abs(ops.cast(inputs, "float32") - center) / radius
        removed = 1.0 - ops.stop_gradient(
            ops.cast(site.mask.value, "float32"))
        return cls(deviation, removed)

    def counts(self):
        """``(outside, computed)``: removed elements out of range, and
        all removed elements, in the batch (no gradient)."""
        deviation = ops.stop_gradient(self.deviation)
        weights = self.removed * ops.ones_like(deviation)
        outside = ops.where(ops.greater(deviation, 1.0), weights, 0.0)
        return ops.sum(outside), ops.sum(weights)

    def penalty(self, power=PENALTY_POWER):
        """``mean(removed * min(deviation, MAX_DEVIATION)^power)`` over the
        elements."""
        deviation = ops.minimum(self.deviation, MAX_DEVIATION)
        return ops.mean(self.removed * ops.power(deviation, float(power)))


def out_of_range_metrics(sites):
    """The epoch means of the out-of-range shares: ``out_of_range`` over
    all ``sites``, then ``out_of_range_<site>`` per site (none without
    sites)."""
    if not sites:
        return []
    return [keras.metrics.Mean(name="out_of_range")] + [
        keras.metrics.Mean(name=f"out_of_range_{site.name}")
        for site in sites]


def measure_ranges(sites, site_inputs, metrics):
    """The ``SiteRange`` of each site on its input in this step; updates
    ``metrics`` (``out_of_range_metrics(sites)``) with the shares of the
    removed elements out of range."""
    ranges = tuple(SiteRange.of(site, inputs)
                   for site, inputs in zip(sites, site_inputs))
    if not ranges:
        return ()
    counts = [r.counts() for r in ranges]
    shares = [sum(c[0] for c in counts) / ops.maximum(
        sum(c[1] for c in counts), 1.0)]
    shares += [outside / ops.maximum(computed, 1.0)
               for outside, computed in counts]
    for metric, share in zip(metrics, shares):
        metric.update_state(share)
    return ranges


class RangePenalty:
    """``weight * mean over sites of SiteRange.penalty()``: pulls the
    polynomials' inputs into their fitted ranges."""

    needs_teacher = False
    needs_activations = False

    def __init__(self, weight=1.0):
        if not 0 <= weight < float("inf"):
            raise ValueError(
                f"range penalty weight must be finite and >= 0, got "
                f"{weight!r}")
        self.weight = float(weight)

    def __call__(self, step):
        if not step.ranges:
            return ops.zeros(())
        penalties = ops.stack([r.penalty() for r in step.ranges])
        return self.weight * ops.mean(penalties)


class InputScaling:
    """Brightness and contrast beyond [0, 1] on training batches.

    Each image is, with probability ``SCALED_SHARE``, stretched around its
    mean by a factor uniform in ``[1, contrast]`` and then multiplied by
    one uniform in ``[1, brightness]``; the others pass unchanged.

    Args:
        brightness: the largest brightness factor (>= 1).
        contrast: the largest contrast factor (>= 1).
        seed: seed of the factors.
    """

    def __init__(self, brightness=2.0, contrast=1.0, seed=None):
        if not (1.0 <= brightness < float("inf")
                and 1.0 <= contrast < float("inf")):
            raise ValueError(
                "brightness and contrast must be finite and >= 1, got "
                f"{brightness!r} and {contrast!r}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.seed = keras.random.SeedGenerator(seed)

    def __call__(self, images):
        shape = (ops.shape(images)[0],) + (1,) * (len(images.shape) - 1)
        draws = keras.random.uniform((3,) + shape, seed=self.seed)
        chosen = ops.cast(ops.less(draws[0], SCALED_SHARE), images.dtype)
        contrast = 1.0 + chosen * (self.contrast - 1.0) * draws[1]
        brightness = 1.0 + chosen * (self.brightness - 1.0) * draws[2]
        axes = tuple(range(1, len(images.shape)))
        mean = ops.mean(images, axis=axes, keepdims=True)
        return brightness * (mean + contrast * (images - mean))


@dataclasses.dataclass(frozen=True)
class Stability:
    """The trainer's range control (see the module doc); the defaults
    are off.

    Attributes:
        range_penalty: weight of ``RangePenalty`` (0: none).
        brightness, contrast: ``InputScaling``'s largest factors (1 and
            1: no scaling).
        seed: seed of the scaling factors.
    """

    range_penalty: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    seed: int = None

    def terms(self):
        """The loss terms: ``[RangePenalty]`` or ``[]``."""
        penalty = RangePenalty(self.range_penalty)
        return [penalty] if penalty.weight else []

    def scaling(self):
        """The ``InputScaling`` of training batches, or ``None``."""
        if self.brightness == self.contrast == 1.0:
            return None
        return InputScaling(self.brightness, self.contrast, self.seed)
