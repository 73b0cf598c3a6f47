"""The cheapest polynomial per site under a protocol, where it costs no
accuracy.

A degree-2 site (Horner: ``(c2 x + c1) x + c0``) pays, per polynomial
element, one product with its coefficients and one secret product; degree 1
(``c1 x + c0``) only the first. ``choose_replacements`` tries, site by site,
the least-squares line through the site's own polynomial on its real
inputs, and keeps it when accuracy on the given images does not fall below
the hardened model's (minus ``tolerance``); the calibrated model prices the
saving.
"""

import keras
import numpy as np

from keras_autorep.graph.rewrite import GraphRewriter
from keras_autorep.layers import PartialReLU
from keras_autorep.costs import calibration


def secret_product_bytes(protocol):
    """Bytes per element of a secret product and its truncation under a
    calibrated protocol: what degree 1 saves over degree 2."""
    coefficients = calibration()["protocols"][protocol]["bytes"]
    return (2 * coefficients.get("opened", 0.0)
            + coefficients.get("secret_products", 0.0)
            + coefficients.get("truncations", 0.0))


def accuracy(model, images, labels):
    logits = model.predict(images, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels))


def linear_fit(model, layer, images):
    """Per-channel ``(2, C)`` coefficients of the least-squares line through
    ``layer``'s polynomial on its inputs at its polynomial positions."""
    inputs = keras.Model(model.inputs, layer.input).predict(
        images, batch_size=256, verbose=0)
    flat = inputs.reshape(len(images), -1)
    removed = np.ones(flat.shape[1], bool)
    removed[keras.ops.convert_to_numpy(layer.kept_indices)] = False
    quadratic = keras.ops.convert_to_numpy(layer.coefficients)
    channels = quadratic.shape[1]
    channel = np.arange(flat.shape[1]) % channels
    fitted = np.zeros((2, channels), "float32")
    for c in range(channels):
        x = flat[:, removed & (channel == c)].ravel()
        if x.size < 2:
            fitted[:, c] = quadratic[:2, c]
            continue
        y = np.polynomial.polynomial.polyval(x, quadratic[:, c])
        fitted[:, c] = np.polynomial.polynomial.polyfit(x, y, 1)
    return fitted


def with_degree_one(model, name, coefficients):
    """``model`` with site ``name`` a degree-1 ``PartialReLU``."""
    def replace(layer):
        if layer.name != name:
            return None
        return [PartialReLU(
            layer.num_kept, degree=1, name=name,
            kept_indices=keras.ops.convert_to_numpy(layer.kept_indices),
            coefficients=coefficients)]

    return GraphRewriter(replace, lambda layer: layer.name == name).rebuild(
        model)


def choose_replacements(model, protocol, images, labels, tolerance=0.0):
    """Degree 1 instead of 2 at each site where accuracy on ``images``
    (scaled as the model takes them) stays at least the hardened model's
    minus ``tolerance``.

    Returns:
        ``(model, choices)``: the model with the accepted replacements and,
        per degree-2 site, ``{"layer", "polynomials", "degree",
        "accuracy", "baseline", "saved_bytes"}`` (``accuracy``: with
        degree 1 there; ``baseline``: the hardened model's; ``saved_bytes``:
        the calibrated saving per inference under ``protocol``, 0 where
        degree 2 stays).
    """
    per_element = secret_product_bytes(protocol)
    baseline = accuracy(model, images, labels)
    choices = []
    names = [l.name for l in model.layers if isinstance(l, PartialReLU)]
    for name in names:
        layer = model.get_layer(name)
        removed = layer.total_relus - layer.num_kept
        if layer.degree != 2 or removed == 0:
            continue
        candidate = with_degree_one(
            model, name, linear_fit(model, layer, images))
        score = accuracy(candidate, images, labels)
        accepted = score >= baseline - tolerance
        if accepted:
            model = candidate
        choices.append({
            "layer": name, "polynomials": removed,
            "degree": 1 if accepted else 2, "accuracy": score,
            "baseline": baseline,
            "saved_bytes": removed * per_element if accepted else 0.0,
        })
    return model, choices
