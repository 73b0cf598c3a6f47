"""What one hardened site computes in private inference, per form.

A hardened site (``PartialReLU``) applies its activation to its kept
elements and a *replacement* to the others, in the PI form the ONNX export
traces: the kept elements gathered through the activation, the removed
ones through the replacement, one gather putting both back in place.
Replacement forms (``FORMS``):

* ``"poly2"``: ``(c2 x + c1) x + c0`` by Horner: one product with the
  coefficients, one product of two secrets;
* ``"poly1"``: ``c1 x + c0``: one product with the coefficients;
* ``"identity"``: ``x``: nothing at all.

The coefficients are per channel where the site keeps nothing (the
polynomial runs on the whole map) and per element where it is gathered.
Kept elements go through the site's activation as the exported graph
computes it (``activation_workload``: ReLU a comparison, ReLU6 a clip,
SiLU a sigmoid and a product, ...).
``site_workload`` gives the op counts of one site, the same ones
``keras_autorep.pi.onnx_workload`` reads off its exported graph (the
tests check that); additions, gathers and concatenations are free.
"""

from keras_autorep.costs.workload import (
    Workload,
    blocks,
    chunks,
    comparison,
    constant_product,
    secret_product,
)

FORMS = ("poly2", "poly1", "identity")
# Products of a form's Horner evaluation: with the coefficients, of secrets.
_PRODUCTS = {"poly2": (1, 1), "poly1": (1, 0), "identity": (0, 0)}
_DEGREE_FORMS = {2: "poly2", 1: "poly1"}


def check_form(form):
    """``form`` if it is one of ``FORMS``, else ``ValueError``."""
    if form not in FORMS:
        raise ValueError(f"replacement must be one of {FORMS}, got {form!r}")
    return form


def spec_form(site):
    """The replacement form of a ``pi_spec.json`` site (``None`` for a
    plain activation site); files without forms name it by degree."""
    if "form" in site:
        return site["form"]
    return _DEGREE_FORMS.get(site["degree"])


def activation_workload(activation, n):
    """The ``Workload`` of a selectable activation on ``n`` elements, as
    its exported ONNX graph computes it (GELU: ``onnx_pi``'s logistic
    form of ``erfc``, three products with constants and three of
    secrets)."""
    clip = Workload(clips=n, clip_nodes=1, clip_chunks=chunks(n))
    sigmoid = Workload(sigmoids=n, sigmoid_nodes=1, sigmoid_blocks=blocks(n))
    scale, product = constant_product(n, n + 1), secret_product(n, 2 * n)
    parts = {
        "relu": [comparison(n)],
        "leaky_relu": [comparison(n)],
        "relu6": [clip],
        "hard_sigmoid": [clip, scale],
        "hard_swish": [clip, scale, product],
        "sigmoid": [sigmoid],
        "silu": [sigmoid, product],
        "gelu": [sigmoid] + [scale, product] * 3,
    }
    if activation not in parts:
        raise ValueError(f"no PI workload for activation {activation!r}")
    return sum(parts[activation], Workload())


def site_workload(total, kept, form="poly2", channels=1, calls=1,
                  activation="relu"):
    """The ``Workload`` of one hardened site, per example.

    Args:
        total: activation elements per example over all calls.
        kept: kept elements per example over all calls.
        form: the replacement of the others (``FORMS``).
        channels: the channel (last) axis of the activation.
        calls: how many times the layer is applied.
        activation: what the kept elements go through.
    """
    check_form(form)
    per_call, kept_per_call = total // calls, kept // calls
    removed = per_call - kept_per_call
    work = Workload()
    if kept_per_call:
        work += activation_workload(activation, kept_per_call)
    constant, secret = _PRODUCTS[form] if removed else (0, 0)
    coefficients = removed if kept_per_call else channels
    if constant:
        work += constant_product(removed, removed + coefficients)
    if secret:
        work += secret_product(removed, 2 * removed)
    return work.scaled(calls)


def spec_site_workload(site, kept=None):
    """``site_workload`` of a ``pi_spec.json`` site, at its own kept count
    or at ``kept``."""
    return site_workload(site["total"],
                         site["kept"] if kept is None else kept,
                         spec_form(site) or "identity", site["shape"][-1],
                         site["calls"], site.get("activation", "relu"))


def all_relu_workload(workload, spec):
    """``workload`` (an export's) with every site of its ``spec`` its
    activation: each site's workload replaced by its all-kept one."""
    for site in spec["sites"]:
        if spec_form(site) is not None and site["kept"] < site["total"]:
            workload = (workload - spec_site_workload(site)
                        + spec_site_workload(site, kept=site["total"]))
    return workload
