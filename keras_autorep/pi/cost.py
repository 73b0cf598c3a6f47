"""A first-order private-inference cost model of the non-linear layers.

Each ReLU is priced as a garbled-circuit (GC) ReLU, with published
per-ReLU figures; polynomial activations are priced relative to a ReLU with
a published latency ratio. Linear layers (convolutions, dense layers under
homomorphic encryption or secret sharing) are not modelled, nor are
OT-based ReLU protocols (CrypTFlow2, Cheetah), for which no per-ReLU figure
is verified here: measure those rather than quote them.

Sources:

[1] K. Garimella, Z. Ghodsi, N. K. Jha, S. Garg, B. Reagen, "Characterizing
    and Optimizing End-to-End Systems for Private Inference", ASPLOS 2023.
    Delphi's GC ReLU library, single thread. Server (AMD EPYC 7502):
    garbling 0.102 ms/ReLU, evaluation 0.052 ms/ReLU. Client (Intel Atom):
    garbling 0.57-0.68 ms/ReLU, evaluation 0.28-0.35 ms/ReLU. When the
    server garbles, the client stores 18,248 B of circuits per ReLU.
[2] PASNet (H. Peng et al., DAC 2023) latency model for a layer of N
    elements: ReLU 13.6 N + 0.4, x^2 0.03 N + 0.2. The units are not
    documented, so only the per-element ratio 0.03 / 13.6 is used here.
"""

import dataclasses

from keras_autorep.graph.counting import count_relus

# [1] Garimella et al., ASPLOS 2023, Delphi GC ReLU, single thread.
GC_SERVER_GARBLE_MS_PER_RELU = 0.102  # AMD EPYC 7502, offline
GC_SERVER_EVAL_MS_PER_RELU = 0.052  # AMD EPYC 7502, online
GC_CLIENT_GARBLE_MS_PER_RELU = (0.57, 0.68)  # Intel Atom, range
GC_CLIENT_EVAL_MS_PER_RELU = (0.28, 0.35)  # Intel Atom, range, online
GC_CLIENT_STORAGE_BYTES_PER_RELU = 18_248  # circuits sent offline, stored
# [2] PASNet (Peng et al., DAC 2023): per-element slopes, units undocumented.
PASNET_RELU_SLOPE = 13.6
PASNET_X2_SLOPE = 0.03
POLYNOMIAL_TO_RELU_RATIO = PASNET_X2_SLOPE / PASNET_RELU_SLOPE

SOURCES = (
    "[1] Garimella et al., 'Characterizing and Optimizing End-to-End Systems "
    "for Private Inference', ASPLOS 2023: Delphi GC ReLU library, single "
    f"thread; server (AMD EPYC 7502) garbling {GC_SERVER_GARBLE_MS_PER_RELU} "
    f"ms/ReLU, evaluation {GC_SERVER_EVAL_MS_PER_RELU} ms/ReLU; client "
    "(Intel Atom) evaluation "
    f"{GC_CLIENT_EVAL_MS_PER_RELU[0]}-{GC_CLIENT_EVAL_MS_PER_RELU[1]} "
    f"ms/ReLU; {GC_CLIENT_STORAGE_BYTES_PER_RELU:,} B/ReLU of garbled "
    "circuits sent to and stored by the client when the server garbles.",
    "[2] PASNet (Peng et al., DAC 2023) latency model: ReLU "
    f"{PASNET_RELU_SLOPE} N + 0.4, x^2 {PASNET_X2_SLOPE} N + 0.2, units "
    "undocumented: only the ratio x^2/ReLU = "
    f"{POLYNOMIAL_TO_RELU_RATIO:.5f} is used, applied to the GC evaluation "
    "time [1].",
    "Linear layers, polynomial communication and OT-based ReLU protocols "
    "(CrypTFlow2, Cheetah) are not modelled.",
)


@dataclasses.dataclass(frozen=True)
class PICost:
    """Estimated cost of the non-linear layers of one model, per example.

    Attributes:
        relus: ReLU elements computed.
        polynomials: elements through a polynomial instead of ReLU.
        comparisons: other comparisons (max-pooling, relu6, ...), each
            priced as one GC ReLU.
        online_ms: GC evaluation time of the ReLUs on the server CPU [1]
            plus the polynomials scaled by the PASNet ratio [2].
        online_client_ms: ``(low, high)`` online time with a client-class
            (Intel Atom) GC evaluator [1], polynomials as above.
        garbling_ms: offline GC garbling time on the server CPU [1].
        client_storage_bytes: communication of the GC ReLUs: the garbled
            circuits the server sends (offline) and the client stores [1].
            Polynomials and the online label transfer are not included.
    """

    relus: int
    polynomials: int
    comparisons: int
    online_ms: float
    online_client_ms: tuple
    garbling_ms: float
    client_storage_bytes: int


def estimate_cost(relus, polynomials=0, comparisons=0):
    """Price ``relus`` GC ReLUs, ``polynomials`` polynomial elements and
    ``comparisons`` other comparisons (each a GC ReLU).

    Args:
        relus: ReLU elements computed per example.
        polynomials: polynomial-activation elements per example.
        comparisons: max-pooling and other comparisons per example.

    Returns:
        A ``PICost``.
    """
    relus, polynomials = int(relus), int(polynomials)
    comparisons = int(comparisons)
    if min(relus, polynomials, comparisons) < 0:
        raise ValueError(
            f"counts must be >= 0, got relus={relus}, "
            f"polynomials={polynomials}, comparisons={comparisons}"
        )
    circuits = relus + comparisons
    polynomial_relus = polynomials * POLYNOMIAL_TO_RELU_RATIO

    def online(ms_per_relu):
        return (circuits + polynomial_relus) * ms_per_relu

    return PICost(
        relus=relus,
        polynomials=polynomials,
        comparisons=comparisons,
        online_ms=online(GC_SERVER_EVAL_MS_PER_RELU),
        online_client_ms=tuple(
            online(ms) for ms in GC_CLIENT_EVAL_MS_PER_RELU
        ),
        garbling_ms=circuits * GC_SERVER_GARBLE_MS_PER_RELU,
        client_storage_bytes=circuits * GC_CLIENT_STORAGE_BYTES_PER_RELU,
    )


def _ratio(before, after):
    return float("inf") if after == 0 else before / after


def _finite(value):
    """``None`` for an infinite ratio (strict JSON has no infinity)."""
    return None if value == float("inf") else value


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Cost of the exported model next to its all-ReLU original.

    Attributes:
        exported: ``PICost`` of the exported (hardened) model.
        original: ``PICost`` of the all-ReLU original.
        relu_reduction: ``original.relus / exported.relus`` (``inf`` when
            no ReLU is left).
        online_speedup: ``original.online_ms / exported.online_ms``.
        convention: the ReLU counting convention.
        sources: citations of the figures used.
    """

    exported: PICost
    original: PICost
    convention: str
    sources: tuple = SOURCES

    @property
    def relu_reduction(self):
        return _ratio(self.original.relus, self.exported.relus)

    @property
    def online_speedup(self):
        return _ratio(self.original.online_ms, self.exported.online_ms)

    def to_dict(self):
        """JSON-friendly form (infinite ratios become ``None``)."""
        return {
            "exported": dataclasses.asdict(self.exported),
            "original": dataclasses.asdict(self.original),
            "relu_reduction": _finite(self.relu_reduction),
            "online_speedup": _finite(self.online_speedup),
            "convention": self.convention,
            "sources": list(self.sources),
        }

    def text(self):
        """The report as text."""
        exported, original = self.exported, self.original
        rows = [
            ("ReLUs", "{:,}", "relus"),
            ("max-pool and other comparisons", "{:,}", "comparisons"),
            ("polynomial activations", "{:,}", "polynomials"),
            ("online latency, server EPYC 7502 [1,2] (ms)", "{:,.1f}",
             "online_ms"),
            ("offline GC garbling, server [1] (ms)", "{:,.1f}", "garbling_ms"),
        ]
        lines = [
            "PI cost estimate, non-linear layers only, per example, each "
            "ReLU a garbled circuit",
            f"{'':<46}{'exported':>18}{'all-ReLU':>18}",
        ]
        for label, fmt, field in rows:
            lines.append(
                f"{label:<46}{fmt.format(getattr(exported, field)):>18}"
                f"{fmt.format(getattr(original, field)):>18}"
            )

        def client(cost):
            low, high = cost.online_client_ms
            return f"{low:,.0f}-{high:,.0f}"

        def megabytes(cost):
            return f"{cost.client_storage_bytes / 1e6:,.2f}"

        lines.append(
            f"{'online latency, client Intel Atom [1,2] (ms)':<46}"
            f"{client(exported):>18}{client(original):>18}"
        )
        lines.append(
            f"{'communication: GC circuits to client [1] (MB)':<46}"
            f"{megabytes(exported):>18}{megabytes(original):>18}"
        )
        lines.append(
            f"per ReLU [1]: online {GC_SERVER_EVAL_MS_PER_RELU} ms (server "
            f"eval), offline {GC_SERVER_GARBLE_MS_PER_RELU} ms (server "
            f"garbling), {GC_CLIENT_STORAGE_BYTES_PER_RELU:,} B sent to and "
            f"stored by the client; per polynomial element [2]: "
            f"{POLYNOMIAL_TO_RELU_RATIO:.5f} of a ReLU's online time"
        )
        if exported.relus:
            lines.append(
                f"ratio: {self.relu_reduction:,.1f}x fewer ReLUs, online "
                f"{self.online_speedup:,.1f}x faster, communication "
                f"{self.relu_reduction:,.1f}x smaller than all-ReLU"
            )
        else:
            lines.append(
                "ratio: no ReLU left (all replaced by polynomials); online "
                f"{self.online_speedup:,.1f}x faster than all-ReLU, no GC "
                "communication"
            )
        lines.append(f"counting convention: {self.convention}")
        lines.append("sources:")
        lines.extend(f"  {source}" for source in self.sources)
        return "\n".join(lines)

    def __str__(self):
        return self.text()


def _comparisons(totals):
    return totals["max_comparisons"] + totals["other_comparisons"]


def _counts_from_model(model):
    count = count_relus(model)
    return count.totals(), count.convention


def cost_report(hardened_model, original_model=None):
    """Cost report of an exported model against its all-ReLU original.

    Args:
        hardened_model: the exported Keras model, or a PI spec ``dict``
            (``read_pi_spec``), whose ``totals`` are used.
        original_model: optional Keras model to compare with; by default
            the all-ReLU version of ``hardened_model`` (every site a ReLU:
            ``total`` ReLUs).

    Returns:
        A ``CostReport``; ``print(report)`` shows the text.
    """
    if isinstance(hardened_model, dict):
        totals = hardened_model["totals"]
        convention = hardened_model["counting_convention"]
    else:
        totals, convention = _counts_from_model(hardened_model)
    exported = estimate_cost(totals["relu_kept"], totals["polynomial"],
                             _comparisons(totals))
    if original_model is None:
        original = estimate_cost(totals["relu_total"], 0,
                                 _comparisons(totals))
    else:
        base, _ = _counts_from_model(original_model)
        original = estimate_cost(base["relu_kept"], base["polynomial"],
                                 _comparisons(base))
    return CostReport(exported, original, convention)
