"""The PI cost report of an export: every protocol, against all-ReLU.

``cost_report(export)`` reads an export's ``pi_spec.json`` and
``model.onnx`` (or exports a Keras model to a scratch folder first: one
more tf2onnx run, so price what ``export_all`` wrote, e.g. in its
``extras`` hook, rather than the model it exported), predicts each
calibrated protocol's communication, rounds and latency for the model
and for its all-ReLU version (every site a ReLU, or a given original
model), adds the garbled-circuit family and, where ``pi_measured.json``
exists, the measured figures. ``pi_cost.txt`` is its ``text()``;
``report.json`` holds its ``to_dict()``.
"""

import dataclasses
from pathlib import Path

import keras

from keras_autorep.backends import current
from keras_autorep.export import (
    ONNX_FILENAME,
    SPEC_FILENAME,
    read_pi_spec,
    write_pi_spec,
)
from keras_autorep.costs import (
    Network,
    calibration_path,
    predict,
    protocols,
    provenance,
)
from keras_autorep.costs.sites import all_relu_workload
from keras_autorep.pi.garbled import SOURCES, estimate_cost
from keras_autorep.pi.measure import read_measured
from keras_autorep.pi.scratch import scratch_folder
from keras_autorep.pi.workload import onnx_workload


def _ratio(before, after):
    return None if not after else before / after


def _smooth_sites(spec, field):
    """``field`` summed over the sites of a smooth activation (silu, ...)."""
    return sum(site[field] for site in spec["sites"]
               if site.get("pi_cost") == "smooth")


def spec_counts(spec):
    """Kept comparison-based budget elements (``relus``), ReLU comparisons
    (max-pooling and other comparisons included, as ReLU-equivalents), smooth activation elements (silu, gelu, sigmoid:
    piecewise-approximated in PI, kept at sites or outside the budget) and
    polynomial elements per degree of a PI spec."""
    totals = spec["totals"]
    degrees = {}
    for site in spec["sites"]:
        if site["degree"] is not None:
            removed = site["total"] - site["kept"]
            degrees[site["degree"]] = degrees.get(site["degree"], 0) + removed
    smooth_kept = _smooth_sites(spec, "kept")
    comparisons = (totals["relu_kept"] - smooth_kept
                   + totals.get("max_comparisons", 0)
                   + totals.get("other_comparisons", 0))
    return {"relus": totals["relu_kept"] - smooth_kept,
            "comparisons": comparisons,
            "smooth": smooth_kept + totals.get("smooth_elements", 0),
            "polynomials": totals["polynomial"],
            "polynomials_by_degree": degrees}


def all_relu_counts(spec):
    """The counts of ``spec``'s model with every site its activation."""
    counts = spec_counts(spec)
    smooth_kept, smooth_total = (_smooth_sites(spec, "kept"),
                                 _smooth_sites(spec, "total"))
    extra = counts["comparisons"] - counts["relus"]
    relus = spec["totals"]["relu_total"] - smooth_total
    return {"relus": relus, "comparisons": relus + extra,
            "smooth": counts["smooth"] - smooth_kept + smooth_total,
            "polynomials": 0, "polynomials_by_degree": {}}


def priced(source, count=None):
    """``(spec, workload)`` of a version folder, a ``pi_spec.json`` path or
    a Keras model (``workload`` is ``None`` without an ONNX graph: a folder
    without ``model.onnx``, or a model on a backend that cannot export).

    A model is written to a scratch folder first (its spec from ``count``,
    its ``count_relus`` if the caller has it; its ONNX graph through
    tf2onnx); a folder is read as written.
    """
    if isinstance(source, keras.Model):
        with scratch_folder("priced") as folder:
            write_pi_spec(source, folder / SPEC_FILENAME, count=count)
            if current().exports:
                from keras_autorep.export import export_onnx

                export_onnx(source, folder / ONNX_FILENAME, batch_size=1)
            return priced(folder)
    if count is not None:
        raise ValueError(
            "count is a Keras model's count; an export's is in its "
            f"{SPEC_FILENAME}")
    folder = Path(source)
    folder = folder if folder.is_dir() else folder.parent
    spec = read_pi_spec(folder)
    onnx_path = folder / ONNX_FILENAME
    workload = onnx_workload(onnx_path) if onnx_path.exists() else None
    return spec, workload


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Predicted (and measured) PI cost of an export and of its all-ReLU
    version. ``predictions``: ``{protocol: (exported, original)}``
    ``Prediction`` pairs; ``garbled``: ``(exported, original)`` ``PICost``;
    ``measured``: the export's ``pi_measured.json`` runs."""

    counts: dict
    original_counts: dict
    predictions: dict
    garbled: tuple
    network: Network
    convention: str
    measured: dict

    def to_dict(self):
        return {
            "counts": self.counts,
            "original_counts": self.original_counts,
            "network": dataclasses.asdict(self.network),
            "protocols": {
                name: {
                    "exported": exported.to_dict(self.network),
                    "original": original.to_dict(self.network),
                    "communication_ratio": _ratio(original.bytes,
                                                  exported.bytes),
                    "provenance": provenance(name),
                    "measured": self.measured.get(name),
                }
                for name, (exported, original) in self.predictions.items()
            },
            "garbled_circuits": {
                "exported": dataclasses.asdict(self.garbled[0]),
                "original": dataclasses.asdict(self.garbled[1]),
                "sources": list(SOURCES),
            },
            "convention": self.convention,
        }

    def text(self):
        lines = [
            "PI cost per inference (batch 1): exported model vs its "
            "all-ReLU version",
            f"network (stated): {self.network.text()}",
            f"{'':<44}{'exported':>14}{'all-ReLU':>14}{'ratio':>9}",
        ]

        def row(label, exported, original, fmt="{:,.0f}"):
            ratio = _ratio(original, exported)
            lines.append(
                f"{label:<44}{fmt.format(exported):>14}"
                f"{fmt.format(original):>14}"
                f"{'' if ratio is None else f'{ratio:.2f}x':>9}")

        row("ReLU comparisons", self.counts["comparisons"],
            self.original_counts["comparisons"])
        if self.counts.get("smooth") or self.original_counts.get("smooth"):
            row("smooth activations (piecewise approx.)",
                self.counts["smooth"], self.original_counts["smooth"])
            lines.append(
                "  (silu/gelu/sigmoid elements: not in the calibrated "
                "protocol predictions below)")
        degrees = self.counts["polynomials_by_degree"]
        row("polynomial elements "
            + "/".join(f"deg {d}" for d in sorted(degrees)),
            self.counts["polynomials"], 0)
        for name, (exported, original) in self.predictions.items():
            lines.append(f"{name} (calibrated prediction)")
            row("  communication (MB)", exported.bytes / 1e6,
                original.bytes / 1e6, "{:,.2f}")
            row("  rounds", exported.rounds, original.rounds, "{:,.0f}")
            row("  latency (ms)", exported.latency_ms(self.network),
                original.latency_ms(self.network), "{:,.1f}")
            if exported.setup_bytes:
                lines.append(f"  plus a one-time setup of at least "
                             f"{exported.setup_bytes / 1e6:,.2f} MB")
            measured = self.measured.get(name)
            if measured:
                lines.append(
                    f"  measured on {measured['images']} image(s): "
                    f"{measured['bytes'] / 1e6:,.2f} MB, "
                    f"{measured['rounds']:,} rounds, "
                    f"{measured['online_seconds'] * 1e3:,.0f} ms online, "
                    f"top-1 agreement {measured['top1_agreement']:.0%}")
        gc_exported, gc_original = self.garbled
        lines.append("garbled circuits (published figures [1,2], "
                     "non-linear layers only)")
        row("  online latency, server EPYC 7502 (ms)",
            gc_exported.online_ms, gc_original.online_ms, "{:,.1f}")
        row("  communication: circuits to client (MB)",
            gc_exported.client_storage_bytes / 1e6,
            gc_original.client_storage_bytes / 1e6, "{:,.2f}")
        lines.append(f"counting convention: {self.convention}")
        if self.predictions:
            lines.append(f"calibration ({calibration_path()}):")
            lines.extend(f"  {provenance(name)}" for name in self.predictions)
        else:
            lines.append("calibrated protocols: not priced (no ONNX graph)")
        lines.append("sources:")
        lines.extend(f"  {source}" for source in SOURCES)
        return "\n".join(lines)

    def __str__(self):
        return self.text()


def cost_report(exported, original=None, network=None, names=None,
                count=None):
    """Cost report of an export against its all-ReLU version.

    To price a model that is exported anyway, price the written folder:
    ``cost_report(folder, original=teacher)`` (``folder``: what
    ``export_all`` returns, or the staging folder its ``extras`` hook
    gets) reads that ``model.onnx``; ``cost_report(model, teacher)``
    gives the same figures but converts the model to ONNX once more.

    Args:
        exported: a version folder (or its ``pi_spec.json``), or the
            exported Keras model.
        original: optional all-ReLU model (same forms), or its version
            folder, to compare with; by default ``exported`` with every
            site a ReLU.
        network: ``Network`` (RTT, bandwidth) of the latency prediction.
        names: protocols to price (default: every calibrated one).
        count: ``count_relus(exported)`` when ``exported`` is a model and
            the caller has it.

    Returns:
        A ``CostReport``.
    """
    network = network or Network()
    spec, workload = priced(exported, count)
    counts = spec_counts(spec)
    if original is None:
        original_spec, original_workload = spec, (
            all_relu_workload(workload, spec) if workload else None)
        original_counts = all_relu_counts(spec)
    else:
        original_spec, original_workload = priced(original)
        original_counts = spec_counts(original_spec)
    predictions = {}
    if workload is not None and original_workload is not None:
        for name in names or protocols():
            predictions[name] = (predict(workload, name),
                                 predict(original_workload, name))
    measured = {}
    if not isinstance(exported, keras.Model):
        folder = Path(exported)
        measured = read_measured(folder if folder.is_dir() else folder.parent)
    garbled = tuple(
        estimate_cost(c["relus"], c["polynomials"],
                      c["comparisons"] - c["relus"])
        for c in (counts, original_counts)
    )
    return CostReport(counts, original_counts, predictions, garbled, network,
                      spec["counting_convention"], measured)
