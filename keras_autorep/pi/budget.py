"""Cost budgets resolved against a model: ``cost_budget``.

A cost budget (``"3.7MB"``: bytes of one inference, both directions, as
``pi measure`` reports them; ``"250ms"``: its latency on a stated network)
prices the model under one calibrated protocol. What the model costs
besides its ReLU sites comes from its real exported graph: the model as it
stands (a selector model hardened with its current masks and forms) is
written to ONNX once, priced (``onnx_workload``), and its sites'
workloads (``keras_autorep.costs.sites``) come off; each site is then
priced at any kept count and form. The result, a ``CostBudget``, is what
``BudgetTrainer``, ``land_masks``, ``harden`` and the recipes take.
"""

from keras_autorep.budgets import parse_cost
from keras_autorep.costs import CostBudget, Network, protocols
from keras_autorep.costs.sites import spec_site_workload
from keras_autorep.graph import foldable_sites, harden, selectors
from keras_autorep.graph.counting import counted
from keras_autorep.pi.report import priced


def cost_budget(budget, model, protocol, network=None, forms=None,
                count=None):
    """Resolve the cost budget ``budget`` against ``model``.

    Args:
        budget: a cost string (``"3.7MB"``, ``"800KB"``, ``"250ms"``;
            ``keras_autorep.budgets.parse_cost``).
        model: the model to price: a selector model (the budget's sites
            are its selectors) or a hardened one (its ``PartialReLU``
            sites).
        protocol: a calibrated protocol (``keras_autorep.costs
            .protocols()``).
        network: the ``Network`` of a latency budget (default: LAN).
        forms: the replacement forms the sites may use, for the check that
            the budget can be met at all (default: every form).
        count: the model's ``ReLUCount`` if the caller has it.

    Returns:
        A ``CostBudget``.

    Raises:
        ValueError: not a cost string, an unknown protocol, or a budget
            below what the model costs with no ReLU kept (its linear
            layers alone, with the cheapest allowed forms); one line each.
        RuntimeError: the backend cannot export the model (TensorFlow
            prices it).
    """
    parsed = parse_cost(budget)
    if parsed is None:
        raise ValueError(f"{budget!r} is not a cost budget: expected bytes "
                         "like 3.7MB or 800KB, or a latency like 250ms")
    if protocol not in protocols():
        raise ValueError(f"unknown protocol {protocol!r}; calibrated: "
                         f"{', '.join(protocols())}")
    metric, amount = parsed
    count = counted(model, count)
    names = [layer.name for layer in selectors(model)]
    inference = harden(model, count=count) if names else model
    spec, workload = priced(inference, count=None if names else count)
    if workload is None:
        raise RuntimeError(
            "a cost budget prices the model's exported ONNX graph, which "
            "needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    names = names or [site["layer"] for site in spec["sites"]
                      if site["kind"] == "PartialReLU"]
    sites = {site["layer"]: site for site in spec["sites"]
             if site["layer"] in names}
    fixed = workload
    for site in sites.values():
        fixed = fixed - spec_site_workload(site)
    foldable = foldable_sites(model)
    resolved = CostBudget.for_sites(
        amount, metric, protocol, network or Network(), fixed,
        {name: (site["total"], site["shape"][-1], site["calls"],
                name in foldable, site.get("activation", "relu"))
         for name, site in sites.items()}, budget.strip())
    floor = resolved.floor(forms)
    if floor > resolved.amount:
        raise ValueError(
            f"budget {budget.strip()} is below the least model "
            f"{model.name!r} can cost under {protocol}: "
            f"{resolved.describe(floor)} with no ReLU kept (its linear "
            "layers and the cheapest replacements allowed)")
    return resolved
