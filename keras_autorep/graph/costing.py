"""A model's predicted private-inference cost under a ``CostBudget``.

``LiveCost(model, budget)`` is the cost of a selector model's current
masks and replacement forms as a scalar tensor, read during training:
forward, the calibrated cost (``CostBudget.cost`` at the ends of each
site, its line through one and two kept elements between them: exact
but for CHEETAH's steps in chunks and blocks); backward, each
kept element of a site adds the *chord* slope of its site's cost, from
keeping nothing to keeping everything. The chord spreads what the ends
cost beyond the per-element slope (a site that keeps any element pays its
comparison rounds, one that keeps all pays no replacement) over the site's
elements, so emptying a layer pays off as it does in the runtime. A site
whose form is learned (``replacement="auto"``) costs what its current
form costs, and its masks see the chord of its cheapest form: a site
deciding its form is priced as it can be, not as it starts (a degree-2
element can cost more than a comparison, which would otherwise keep every
ReLU on).

``land_cost_masks(model, budget)`` trims (or fills) the masks by indicator
until the model costs at most the budget, as ``land_masks`` does for a
ReLU count.
"""

import keras
import numpy as np
from keras import ops

from keras_autorep.graph.counting import LiveReLUCount, counted
from keras_autorep.graph.sites import PARTIAL_RELU, SELECTOR, sites


def site_forms(model):
    """``{site name: replacement form}`` of the selectors (each one's fixed
    form, or the one its learned form weights choose now) and hardened
    sites of ``model``."""
    return {site.layer.name: (site.layer.current_form()
                              if site.kind == SELECTOR else site.layer.form)
            for site in sites(model, (SELECTOR, PARTIAL_RELU))}


def predicted_cost(model, budget, count=None):
    """What ``model`` (selector or hardened) costs under ``budget``'s
    calibration, from its kept elements and forms."""
    rows = {row.layer: row.kept for row in counted(model, count).rows}
    forms = site_forms(model)
    return budget.cost({name: rows[name] for name in budget.sites}, forms)


def _check_sites(model, budget, live):
    missing = sorted({layer.name for layer, _ in live.sites}
                     ^ set(budget.sites))
    if missing:
        raise ValueError(
            f"the cost budget prices other sites than model {model.name!r} "
            f"has: {missing}; resolve it against this model "
            "(keras_autorep.pi.cost_budget)")


def _exact_cost(kept, site, form):
    """One site's cost in ``form`` at ``kept`` elements (a tensor; see
    the module doc)."""
    at_zero, at_one, slope, at_total = (float(v) for v in site.forms[form])
    return ops.where(
        kept < 0.5, at_zero,
        ops.where(kept > float(site.total) - 0.5, at_total,
                  at_one + slope * (kept - float(site.calls))))


def _chord(site, form):
    """The slope of a site's cost in ``form`` from keeping nothing to
    keeping everything."""
    at_zero, _, _, at_total = site.forms[form]
    return (at_total - at_zero) / site.total


class LiveCost:
    """The predicted cost of a selector model as a scalar tensor.

    Args:
        model: a built model with ``ReLUSelector`` layers.
        budget: a ``CostBudget`` resolved against it.
        count: its ``ReLUCount`` (computed when not given).
    """

    def __init__(self, model, budget, count=None):
        live = LiveReLUCount(model, count)
        _check_sites(model, budget, live)
        self.budget = budget
        self.sites = [(layer, calls, budget.sites[layer.name])
                      for layer, calls in live.sites]

    def _priced(self, layer):
        for candidate, calls, site in self.sites:
            if candidate is layer:
                kept = float(ops.convert_to_numpy(candidate.kept_relus()))
                return round(kept * calls), calls, site
        raise ValueError(f"{layer.name!r} is not a priced site")

    def site_cost(self, layer, form, emptied=False):
        """What ``layer``'s site would cost in ``form`` (a float): with
        its kept elements as they are, or ``emptied`` of them."""
        kept, _, site = self._priced(layer)
        return float(site.cost(0 if emptied else kept, form))

    def indicators_at_equal_cost(self, layer, form):
        """How many of ``layer``'s indicators it could keep in ``form`` at
        what it costs now in its current form: the most whose cost is at
        most that (the cheapest count if none is)."""
        kept, calls, site = self._priced(layer)
        target = site.cost(kept, layer.current_form())
        unit = layer.relus_per_indicator * calls
        costs = np.array([site.cost(count * unit, form)
                          for count in range(site.total // unit + 1)])
        fits = np.flatnonzero(costs <= target * (1 + 1e-9))
        return int(fits[-1] if fits.size else np.argmin(costs))

    def __call__(self):
        total = ops.convert_to_tensor(self.budget.fixed, "float32")
        for layer, calls, site in self.sites:
            kept = layer.kept_relus() * float(calls)
            weights = layer.form_weights()
            for form, weight in weights.items():
                total = total + weight * ops.stop_gradient(
                    _exact_cost(kept, site, form))
            chord = max(_chord(site, form) for form in weights)
            total = total + chord * (kept - ops.stop_gradient(kept))
        return total


# Landing aims this far below a cost budget: a runtime's measurement
# differs from the calibrated prediction by up to a few tenths of a per
# cent on the models measured (README, "Private inference, measured").
LANDING_MARGIN = 0.01


def land_cost_masks(model, budget, fill=True, count=None):
    """Masks under which ``model`` costs at most ``budget``, by indicator.

    Above the budget, kept positions go in the order of their indicators
    ``alpha``, lowest first, until the cost fits; with ``fill``, below it
    removed positions come back, highest ``alpha`` first, while each still
    fits. "Fits" is ``LANDING_MARGIN`` below the budget, so a measurement
    keeps to it too. The forms are the selectors' own (``site_forms``).

    Returns:
        ``{site: boolean array of the indicator's shape}``.

    Raises:
        ValueError: removing ReLUs cannot bring the cost within the budget
            (e.g. degree-2 replacements under a protocol where they cost
            more than a comparison); the message gives the lowest cost
            reached.
    """
    live = LiveReLUCount(model, count)
    _check_sites(model, budget, live)
    forms = site_forms(model)
    layers = [layer for layer, _ in live.sites]
    unit = {layer.name: layer.relus_per_indicator * calls
            for layer, calls in live.sites}
    masks = {layer.name: keras.ops.convert_to_numpy(layer.mask).ravel() > 0.5
             for layer in layers}
    kept = {name: int(mask.sum()) * unit[name] for name, mask in
            masks.items()}
    cost = budget.cost(kept, forms)
    target = budget.amount * (1.0 - LANDING_MARGIN)
    trim = cost > target
    if not trim and not fill:
        return _shaped(layers, masks)
    order = _candidates(layers, masks, keep=not trim)
    for index, position in order:
        name = layers[index].name
        step = -unit[name] if trim else unit[name]
        site = budget.sites[name]
        delta = (site.cost(kept[name] + step, forms[name])
                 - site.cost(kept[name], forms[name]))
        if delta >= 0 if trim else cost + delta > target:
            continue  # trimming it would not save; filling it not fit
        masks[name][position] = not trim
        kept[name] += step
        cost += delta
        if trim and cost <= target:
            break
    if cost > target:
        raise ValueError(
            f"removing ReLUs cannot bring model {model.name!r} within "
            f"{budget}: it costs at least {budget.describe(cost)} with its "
            "replacements (poly1 or identity cost less)")
    return _shaped(layers, masks)


def _candidates(layers, masks, keep):
    """``(layer index, flat position)`` of the removed positions by
    decreasing ``alpha`` (``keep``: to switch on), else of the kept ones by
    increasing ``alpha`` (to switch off)."""
    scores, owners, positions = [], [], []
    for index, layer in enumerate(layers):
        alpha = keras.ops.convert_to_numpy(layer.alpha).astype(
            "float64").ravel()
        chosen = np.flatnonzero(~masks[layer.name] if keep
                                else masks[layer.name])
        scores.append(-alpha[chosen] if keep else alpha[chosen])
        owners.append(np.full(chosen.size, index))
        positions.append(chosen)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(scores, kind="stable")
    return zip(np.concatenate(owners)[order].tolist(),
               np.concatenate(positions)[order].tolist())


def _shaped(layers, masks):
    return {layer.name: masks[layer.name].reshape(tuple(layer.mask.shape))
            for layer in layers}
