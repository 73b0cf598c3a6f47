"""PI spec: the non-linear layers of an exported model, without Keras.

``pi_spec.json`` tells a private-inference toolchain, for every ReLU site of
the model (``PartialReLU``, plain ReLU, ``PolynomialActivation``), which
elements go through ReLU and which through a polynomial, so it can rebuild
those layers next to the ONNX graph. It holds the model's ``count_relus``
row for row: ``spec_from_count`` (``write_pi_spec``) maps a count to a
spec, ``count_from_spec`` maps a spec (``read_pi_spec``) back to the count.

Format (``format_version`` 6)::

    {
      "format": "keras_autorep.pi_spec", "format_version": 6,
      "model": "<model name>",
      "counting_convention": "<text from count_relus, or given>",
      "input": {"name": "image", "shape": [H, W, C], "layout": "NHWC",
                "dtype": "float32", "scale": 0.00392...},
      "sites": [
        {"layer": "<keras layer name>",
         "kind": "PartialReLU" | "ReLU" | "PolynomialActivation",
         "label": "fused relu",    # the count table's kind
         "fused": false,           # true: ReLU fused into a Conv/Dense layer
         "activation": "relu",     # what kept elements apply ("silu", ...)
         "pi_cost": "comparison",  # or "smooth" (piecewise approximation)
         "shape": [H, W, C],       # activation shape without batch
         "calls": 1,               # times the layer is applied
         "total": 256, "kept": 69, # elements per example, all calls
         "comparisons": 0,         # traced, of a non-ReLU activation
         "kept_indices": [3, 17, ...]            # inline, or
         "kept_indices_file": "pi_spec.0_re_lu.kept.npy",
         "form": "poly2",          # the replacement: "poly2", "poly1",
                                   # "identity"; null for plain ReLU
         "degree": 2,              # null for plain ReLU
         "coefficients": [[c0 per channel], [c1 ...], [c2 ...]]},
        ...
      ],
      "traced": [{"layer", "kind", "shape", "comparisons", "not_relu"}],
      "other": [{"layer", "kind", "fused", "shape", "elements",
                 "comparisons", "activation", "pi_cost"}],
      "totals": {"relu_total", "relu_kept", "polynomial",
                 "max_comparisons", "other_comparisons", "smooth_elements",
                 "kept_by_activation"}
    }

Semantics of a site, per example and per call: flatten the activation in
C order (channels last, so element ``j`` belongs to channel ``j % C``);
elements at ``kept_indices`` go through the site's ``activation``
(``max(x, 0)`` for ``"relu"``; the functions of
``keras_autorep.layers.activations`` otherwise), every other element
``j`` through the site's replacement ``form``: ``c0[j % C] + c1[j % C] x
+ c2[j % C] x^2`` (``"poly2"``; ascending powers), ``c0[j % C] + c1[j % C]
x`` (``"poly1"``) or ``x`` itself (``"identity"``, computed by nothing). Plain ReLU sites keep every index and have no coefficients;
``PolynomialActivation`` sites keep none. Index lists with more than
``max_inline_indices`` entries go to a companion ``.npy`` file (1-D int32,
beside the JSON) named in ``kept_indices_file``. ``read_pi_spec`` resolves
both forms to NumPy arrays. The model computes on ``image * scale``.

``traced`` lists comparisons the traced graph computes outside any site (a
custom layer's or a ``keras.ops`` node's ReLUs, see
``keras_autorep.graph.counting``): they are in the ONNX graph as they are,
always computed, and counted in ``relu_total`` and ``relu_kept``.
``other`` lists the non-linear layers outside the budget: comparison-based
ones (max-pooling, relu6, ...) with their ReLU-equivalent comparisons per
example, and smooth ones (silu, sigmoid, ...; ``pi_cost`` ``"smooth"``,
evaluated by a piecewise approximation) with their elements;
``max_comparisons`` totals the comparisons of max-pooling,
``smooth_elements`` the elements of smooth ones. Version 4 added
``activation`` and ``pi_cost``; version 5 the sites' ``label`` and
``comparisons`` and the other sites' ``fused``; version 6 the sites'
``form``.
"""

import json
import re
from pathlib import Path

import keras
import numpy as np

from keras_autorep.export.contract import (
    DEFAULT_INPUT_SCALE,
    INPUT_NAME,
    SPEC_FILENAME,
    check_inference_model,
    input_shape,
)
from keras_autorep.graph.counting import ReLUCount, SiteCount, counted
from keras_autorep.graph.sites import iter_layers
from keras_autorep.layers import PartialReLU, PolynomialActivation
from keras_autorep.layers.relu_selector import replacement_form

FORMAT = "keras_autorep.pi_spec"
FORMAT_VERSION = 6
# Version 3: every site a ReLU; 4: no site labels and comparisons, no
# fused flag on other sites (read with the defaults of count_from_spec);
# 5: no forms (a site's degree names it).
READABLE_VERSIONS = (3, 4, 5, 6)
DEFAULT_MAX_INLINE_INDICES = 4096


def _spec_path(path):
    path = Path(path)
    return path / SPEC_FILENAME if path.is_dir() or not path.suffix else path


def _site(row, layer):
    """A site's entry (kept indices as an int64 array) from its row and
    layer."""
    shape = [int(dim) for dim in row.shape]
    per_call = int(np.prod(shape))
    site = {
        "layer": row.layer,
        "kind": "ReLU",
        "label": row.kind,
        "fused": row.fused,
        "activation": row.activation,
        "pi_cost": row.pi_cost,
        "shape": shape,
        "calls": row.total // per_call,
        "total": row.total,
        "kept": row.kept,
        "comparisons": row.comparisons,
        "form": None,
        "degree": None,
        "coefficients": None,
    }
    if isinstance(layer, PartialReLU):
        kept = keras.ops.convert_to_numpy(layer.kept_indices)
    elif isinstance(layer, PolynomialActivation):
        kept = np.zeros(0, dtype="int64")
    else:
        site["kept_indices"] = np.arange(per_call, dtype="int64")
        return site
    site.update(
        kind=type(layer).__name__,
        form=(layer.form if isinstance(layer, PartialReLU)
              else replacement_form(layer.degree, layer.fit)),
        degree=int(layer.degree),
        coefficients=keras.ops.convert_to_numpy(
            layer.coefficients).astype("float64"),
        kept_indices=np.sort(kept).astype("int64"),
    )
    return site


def spec_from_count(model, count=None, counting_convention=None,
                    input_scale=DEFAULT_INPUT_SCALE):
    """The PI spec of an inference model, from its count.

    Args:
        model: the exported (hardened or plain) Keras model.
        count: ``count_relus(model)`` if the caller has it (else computed).
        counting_convention: text describing the ReLU counting convention;
            defaults to the count's.
        input_scale: factor from raw pixels to the model's input scale.

    Returns:
        The spec ``dict`` as ``read_pi_spec`` returns it (kept indices and
        coefficients as arrays); ``count_from_spec`` gives ``count`` back.
    """
    check_inference_model(model)
    count = counted(model, count)
    layers = {layer.name: layer for layer in iter_layers(model)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "counting_convention": counting_convention or count.convention,
        "input": {
            "name": INPUT_NAME,
            "shape": list(input_shape(model)),
            "layout": "NHWC",
            "dtype": "float32",
            "scale": float(input_scale),
        },
        "sites": [_site(row, layers[row.layer])
                  for row in count.rows if not row.traced],
        "traced": [
            {
                "layer": row.layer,
                "kind": row.kind,
                "shape": [int(dim) for dim in row.shape],
                "comparisons": row.kept,
                "not_relu": row.comparisons,
            }
            for row in count.traced
        ],
        "other": [
            {
                "layer": row.layer,
                "kind": row.kind,
                "fused": row.fused,
                "shape": [int(dim) for dim in row.shape],
                "elements": row.total,
                "comparisons": row.comparisons,
                "activation": row.activation or None,
                "pi_cost": row.pi_cost,
            }
            for row in count.other
        ],
        "totals": count.totals(),
    }


def count_from_spec(spec):
    """The ``ReLUCount`` a PI spec (as ``read_pi_spec`` returns it) was
    written from, without a model: equal to the model's ``count_relus``
    field for field when the spec kept its counting convention."""
    rows = [
        SiteCount(site["layer"], site["label"], tuple(site["shape"]),
                  site["total"], site["kept"], site["fused"],
                  site["comparisons"], site["activation"], site["pi_cost"])
        for site in spec["sites"]
    ] + [
        SiteCount(entry["layer"], entry["kind"], tuple(entry["shape"]),
                  entry["comparisons"], entry["comparisons"],
                  comparisons=entry["not_relu"])
        for entry in spec["traced"]
    ]
    other = tuple(
        SiteCount(entry["layer"], entry["kind"], tuple(entry["shape"]),
                  entry["elements"], entry["elements"], entry["fused"],
                  entry["comparisons"], entry["activation"] or "",
                  entry["pi_cost"])
        for entry in spec["other"]
    )
    totals = spec["totals"]
    return ReLUCount(
        total=totals["relu_total"],
        kept=totals["relu_kept"],
        rows=tuple(rows),
        other=other,
        convention=spec["counting_convention"],
        max_comparisons=totals["max_comparisons"],
        other_comparisons=totals["other_comparisons"],
        smooth_elements=totals["smooth_elements"],
    )


def write_pi_spec(
    model,
    path,
    counting_convention=None,
    input_scale=DEFAULT_INPUT_SCALE,
    max_inline_indices=DEFAULT_MAX_INLINE_INDICES,
    count=None,
):
    """Write ``pi_spec.json`` (and companion ``.npy`` index files).

    Args:
        model: the exported (hardened or plain) Keras model.
        path: the JSON file, or a folder to write ``pi_spec.json`` into.
        counting_convention, input_scale, count: as in ``spec_from_count``.
        max_inline_indices: longer kept-index lists go to ``.npy`` files.

    Returns:
        ``pathlib.Path`` of the JSON file.
    """
    spec = spec_from_count(model, count, counting_convention, input_scale)
    path = _spec_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for number, site in enumerate(spec["sites"]):
        kept = site.pop("kept_indices").astype("int32")
        if kept.size > max_inline_indices:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", site["layer"])
            filename = f"{path.stem}.{number}_{safe}.kept.npy"
            np.save(path.parent / filename, kept)
            site["kept_indices_file"] = filename
        else:
            site["kept_indices"] = kept.tolist()
        if site["coefficients"] is not None:
            site["coefficients"] = site["coefficients"].tolist()
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


def read_pi_spec(path):
    """Read a PI spec; kept indices and coefficients become NumPy arrays.

    Args:
        path: ``pi_spec.json``, or the folder holding it.

    Returns:
        The spec ``dict``; every site has ``kept_indices`` (int64 array,
        read from its ``.npy`` file if needed) and ``coefficients``
        (``(degree + 1, C)`` float array, or ``None``); what an older
        version lacks gets a default: a site's ``activation`` ``"relu"``,
        ``pi_cost`` ``"comparison"``, ``label`` its kind (``"fused relu"``
        when fused) and ``comparisons`` 0; an other site's ``fused``
        ``False``, ``activation`` ``None`` and ``pi_cost``
        ``"comparison"``; ``smooth_elements`` 0.
    """
    path = _spec_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no PI spec at {path}")
    spec = json.loads(path.read_text())
    version = spec.get("format_version")
    if spec.get("format") != FORMAT or version not in READABLE_VERSIONS:
        raise ValueError(
            f"{path} is not a {FORMAT} version {READABLE_VERSIONS} file "
            f"(format {spec.get('format')!r}, version {version!r})"
        )
    spec["totals"].setdefault("smooth_elements", 0)
    for entry in spec["other"]:
        entry.setdefault("fused", False)
        entry.setdefault("activation", None)
        entry.setdefault("pi_cost", "comparison")
    for site in spec["sites"]:
        site.setdefault("activation", "relu")
        site.setdefault("pi_cost", "comparison")
        site.setdefault("label", "fused relu" if site["fused"]
                        else site["kind"])
        site.setdefault("comparisons", 0)
        site.setdefault("form", None if site["degree"] is None
                        else f"poly{site['degree']}")
        if "kept_indices_file" in site:
            kept = np.load(path.parent / site["kept_indices_file"])
        else:
            kept = np.asarray(site["kept_indices"])
        site["kept_indices"] = kept.astype("int64").ravel()
        if site["kept_indices"].size * site["calls"] != site["kept"]:
            raise ValueError(
                f"{path}: site {site['layer']!r} lists "
                f"{site['kept_indices'].size} kept indices per call, but "
                f"kept={site['kept']} over {site['calls']} call(s)"
            )
        if site["coefficients"] is not None:
            site["coefficients"] = np.asarray(site["coefficients"], "float64")
    return spec
