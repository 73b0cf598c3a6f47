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

import dataclasses

from keras_autorep.costs.model import Network, predict
from keras_autorep.costs.sites import FORMS, site_workload

METRICS = {"bytes": "bytes", "latency_ms": "ms"}


def metric_value(prediction, metric, network):
    """A ``Prediction`` in the budget's metric: bytes, or latency in ms on
    ``network``."""
    if metric == "bytes":
        return prediction.bytes
    return prediction.latency_ms(network)


@dataclasses.dataclass(frozen=True)
class SiteCost:
    """What one site costs, in the budget's metric, per form.

    Within a form the cost is affine in the kept elements ``k`` between
    the ends: ``at_one + slope * (k - 1)`` for ``0 < k < total``; the ends
    differ (a site keeping nothing runs no comparison; one keeping
    everything no replacement), so ``at_zero`` and ``at_total`` are exact.

    Attributes:
        total: the site's elements per example (all calls).
        calls: how many times the layer is applied.
        forms: ``{form: (at_zero, at_one, slope, at_total)}``.
    """

    total: int
    calls: int
    forms: dict

    def cost(self, kept, form):
        """The site's cost at ``kept`` elements in ``form``."""
        at_zero, at_one, slope, at_total = self.forms[form]
        if kept <= 0:
            return at_zero
        if kept >= self.total:
            return at_total
        return at_one + slope * (kept - self.calls)

    @classmethod
    def priced(cls, total, channels, calls, value, foldable=False):
        """The ``SiteCost`` of a site, ``value(workload)`` pricing a
        ``Workload`` in the budget's metric; a ``foldable`` site's line
        with nothing kept costs what an identity costs (it folds into the
        linear layer feeding it, ``keras_autorep.graph.fold``)."""
        forms = {}
        for form in FORMS:
            def at(kept, form=form):
                return value(site_workload(total, kept, form, channels,
                                           calls))
            one, two = calls, min(2 * calls, total)
            slope = (at(two) - at(one)) / max(1, two - one)
            empty = "identity" if foldable and form == "poly1" else form
            forms[form] = (at(0, empty), at(one), slope, at(total))
        return cls(total, calls, forms)


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
        channels, calls, foldable)}`` under ``protocol``."""

        def value(workload):
            return metric_value(predict(workload, protocol), metric,
                                network)

        return cls(float(amount), metric, protocol, network,
                   value(fixed_workload),
                   {name: SiteCost.priced(total, channels, calls, value,
                                          foldable)
                    for name, (total, channels, calls, foldable)
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
