"""A budget in what private inference costs, resolved against a model.

``CostBudget`` is a cost budget (bytes of one inference, or its latency
on a stated network, under one calibrated protocol) with what pricing the
model needs: the cost of everything but its ReLU sites (``fixed``, from
the model's exported graph: ``keras_autorep.pi.cost_budget`` builds it)
and, per site, a ``SiteCost``: the site's cost at any kept count in each
replacement form (``keras_autorep.costs.sites``). The model's cost is
``fixed + sum(site costs)``; training, landing and hardening take the
object wherever they take a ReLU budget.
"""

import bisect
import dataclasses

from keras_autorep.costs.model import Network, predictor
from keras_autorep.costs.sites import FORMS, site_workload
from keras_autorep.costs.workload import HE_DIRECT, HE_SLOTS, OT_MIN_WORK

METRICS = {"bytes": "bytes", "latency_ms": "ms"}


def metric_value(prediction, metric, network):
    """A ``Prediction`` in the budget's metric: bytes, or latency in ms on
    ``network``."""
    if metric == "bytes":
        return prediction.bytes
    return prediction.latency_ms(network)


def _breakpoints(per_call):
    """Kept counts per call between which a site's workload is affine:
    around the element counts where an op's chunks, blocks or product path
    change (``keras_autorep.costs.workload``), for the kept and the removed
    elements alike."""
    events = {0, 1, OT_MIN_WORK, HE_SLOTS} | {
        HE_DIRECT * j for j in range(1, per_call // HE_DIRECT + 2)}
    points = set()
    for event in events:
        for near in (event - 1, event, event + 1, event + 2):
            points.update((near, per_call - near))
    return sorted(k for k in points if 0 <= k <= per_call)


@dataclasses.dataclass(frozen=True)
class SiteCost:
    """What one site costs, in the budget's metric, per form.

    The cost is piecewise affine in the kept elements ``k``: exact at the
    ``points`` (``(kept, cost)`` per form, at every kept count where an op
    of the site changes its chunks, blocks or path) and interpolated
    between them. ``forms`` sums each form up for training (``LiveCost``):
    the exact ends (a site keeping nothing runs no comparison; one keeping
    everything no replacement) and the line through one and two kept
    elements per call.

    Attributes:
        total: the site's elements per example (all calls).
        calls: how many times the layer is applied.
        forms: ``{form: (at_zero, at_one, slope, at_total)}``.
        points: ``{form: ((kept, cost), ...)}``, ``kept`` increasing.
    """

    total: int
    calls: int
    forms: dict
    points: dict

    def cost(self, kept, form):
        """The site's cost at ``kept`` elements in ``form``."""
        points = self.points[form]
        kept = min(max(kept, 0), self.total)
        index = bisect.bisect_left(points, (kept,))
        if points[index][0] == kept:
            return points[index][1]
        (low, at_low), (high, at_high) = points[index - 1], points[index]
        return at_low + (at_high - at_low) * (kept - low) / (high - low)

    @classmethod
    def priced(cls, total, channels, calls, value, foldable=False,
               activation="relu"):
        """The ``SiteCost`` of a site, ``value(workload)`` pricing a
        ``Workload`` in the budget's metric; a ``foldable`` site's line
        with nothing kept costs what an identity costs (it folds into the
        linear layer feeding it, ``keras_autorep.graph.fold``); kept
        elements go through ``activation``."""
        forms, points = {}, {}
        kept_counts = [calls * k for k in _breakpoints(total // calls)]
        for form in FORMS:
            def at(kept, form=form):
                return value(site_workload(total, kept, form, channels,
                                           calls, activation))
            empty = "identity" if foldable and form == "poly1" else form
            points[form] = tuple(
                (kept, at(kept, empty) if kept == 0 else at(kept))
                for kept in kept_counts)
            one, two = calls, min(2 * calls, total)
            slope = (at(two) - at(one)) / max(1, two - one)
            forms[form] = (points[form][0][1], at(one), slope,
                           points[form][-1][1])
        return cls(total, calls, forms, points)


@dataclasses.dataclass(frozen=True)
class CostBudget:
    """A cost budget resolved against a model (see the module doc).

    Attributes:
        amount: the budget, in bytes or milliseconds.
        metric: ``"bytes"`` or ``"latency_ms"``.
        protocol: the calibrated protocol that prices the model.
        network: the ``Network`` of a latency budget.
        fixed: the cost of everything but the sites.
        sites: ``{site name: SiteCost}``.
        text: the budget as the user wrote it (e.g. ``"3.7MB"``).
    """

    amount: float
    metric: str
    protocol: str
    network: Network
    fixed: float
    sites: dict
    text: str = ""

    @classmethod
    def for_sites(cls, amount, metric, protocol, network, fixed_workload,
                  sites, text=""):
        """Price ``fixed_workload`` and every site ``{name: (total,
        channels, calls, foldable, activation)}`` under ``protocol``."""

        price = predictor(protocol)

        def value(workload):
            return metric_value(price(workload), metric, network)

        return cls(float(amount), metric, protocol, network,
                   value(fixed_workload),
                   {name: SiteCost.priced(total, channels, calls, value,
                                          foldable, activation)
                    for name, (total, channels, calls, foldable, activation)
                    in sites.items()}, text)

    @property
    def unit(self):
        """``"bytes"`` or ``"ms"``."""
        return METRICS[self.metric]

    def cost(self, kept, forms):
        """The model's cost with ``kept[site]`` elements and replacement
        ``forms[site]`` at each site (a form name for every site, or one
        for all)."""
        return self.fixed + sum(
            site.cost(kept[name], forms if isinstance(forms, str)
                      else forms[name])
            for name, site in self.sites.items())

    def all_relu(self):
        """The cost of the model with every site a ReLU."""
        return self.cost({n: s.total for n, s in self.sites.items()},
                         "identity")

    def floor(self, forms=None):
        """The least this model can cost: each site keeping nothing in the
        cheapest of ``forms`` (default: every form), or everything where
        that is cheaper (a degree-2 replacement can cost more than a
        comparison)."""
        forms = FORMS if forms is None else forms
        return self.fixed + sum(
            min([site.forms[form][0] for form in forms]
                + [site.forms[FORMS[0]][3]])
            for site in self.sites.values())

    def describe(self, value=None):
        """``"3.70 MB"`` or ``"250.0 ms"`` (the budget, or ``value``)."""
        value = self.amount if value is None else value
        if self.metric == "bytes":
            return f"{value / 1e6:,.2f} MB"
        return f"{value:,.1f} ms"

    def __str__(self):
        where = (f" on {self.network.text()}"
                 if self.metric == "latency_ms" else "")
        return f"{self.describe()} under {self.protocol}{where}"
