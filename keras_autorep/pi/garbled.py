"""The garbled-circuit family: published per-ReLU figures, not measured.

The third family of ``keras_autorep.costs`` next to the two calibrated
runtimes: each ReLU (and each max-pooling or other comparison) is priced as
a garbled-circuit (GC) ReLU with published per-ReLU figures; polynomial
activations relative to a ReLU with a published latency ratio. Linear
layers and polynomial communication are not in these figures.

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
    "Garbled-circuit figures cover the non-linear layers only: linear "
    "layers and polynomial communication are not in them.",
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
