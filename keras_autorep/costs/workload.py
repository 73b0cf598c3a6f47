"""What one private inference computes, per op class, as features.

``Workload`` is the per-example op count of a network (what
``keras_autorep.pi.onnx_workload`` reads off an exported ONNX graph, or
what ``keras_autorep.costs.sites`` derives for a site); ``features``
turns it into the cost features the calibration prices (see
``keras_autorep.costs.model``).

Besides elements and nodes, two counts follow how SPU's CHEETAH runs a
node, since its messages depend on them:

* ``chunks(n)``: its OT-based kernels (comparisons, truncations) split a
  node's ``n`` elements over ``min(OT_INSTANCES, ceil(n / OT_MIN_WORK))``
  OT instances, each exchanging its own messages (the runner fixes SPU's
  concurrency at ``OT_INSTANCES``);
* ``blocks(n)``: a product of two secrets of at least ``HE_DIRECT``
  elements is computed directly by homomorphic encryption, in halves
  packed into ``HE_SLOTS``-slot ciphertexts; smaller ones take Beaver
  triples from a cache filled by whole batches, so their cost is per
  element. A square inside SPU's own approximations (the sigmoid's) packs
  at least one ciphertext per node.
"""

import dataclasses
import math

OT_INSTANCES = 2
OT_MIN_WORK = 2048
HE_SLOTS = 8192
HE_DIRECT = 2 * HE_SLOTS


def chunks(n):
    """OT instances a CHEETAH kernel on ``n`` elements runs on."""
    return min(OT_INSTANCES, math.ceil(n / OT_MIN_WORK)) if n else 0


def blocks(n):
    """Ciphertext blocks of a homomorphic product of ``n`` elements: one
    up to ``HE_SLOTS``, else two halves in ``HE_SLOTS``-slot blocks."""
    if n <= HE_SLOTS:
        return 1
    half = n // 2
    return math.ceil(half / HE_SLOTS) + math.ceil((n - half) / HE_SLOTS)


def max_levels(window, windows):
    """The element counts of the levels of a max over ``window`` elements
    per window as a tree of pairwise comparisons, for ``windows`` windows
    (``window - 1`` comparisons per window in all)."""
    sizes = []
    while window > 1:
        sizes.append(window // 2 * windows)
        window = (window + 1) // 2
    return sizes


@dataclasses.dataclass(frozen=True)
class Workload:
    """Per-example op counts of one network (see the module docstring).

    ``*_out``: output elements; ``*_in``: elements of both operands (what
    Beaver-triple protocols open); ``*_nodes``: graph nodes (rounds);
    ``*_chunks``: ``chunks`` summed over nodes. Comparisons are ReLUs (and
    other ``max(x, 0)``); clips bound an element on both sides (ReLU6, hard
    sigmoid); a max-pooling window of ``k`` elements is a tree of ``k - 1``
    comparisons in ``max_levels`` levels; sigmoids are the logistic
    function (SiLU's, the gates', GELU's); secret products of fewer than
    ``HE_DIRECT`` elements are also ``secret_products_small``, the others
    count ``secret_product_blocks``.
    """

    comparisons: int = 0
    comparison_nodes: int = 0
    comparison_chunks: int = 0
    clips: int = 0
    clip_nodes: int = 0
    clip_chunks: int = 0
    max_windows: int = 0
    max_comparisons: int = 0
    max_nodes: int = 0
    max_levels: int = 0
    max_chunks: int = 0
    sigmoids: int = 0
    sigmoid_nodes: int = 0
    sigmoid_blocks: int = 0
    secret_products_out: int = 0
    secret_products_in: int = 0
    secret_product_nodes: int = 0
    secret_products_small: int = 0
    secret_product_blocks: int = 0
    constant_products_out: int = 0
    constant_products_in: int = 0
    constant_product_nodes: int = 0
    linear_out: int = 0
    linear_in: int = 0
    linear_macs: int = 0
    linear_nodes: int = 0
    means_out: int = 0
    mean_nodes: int = 0
    truncation_chunks: int = 0

    def __add__(self, other):
        return Workload(*(
            getattr(self, f.name) + getattr(other, f.name)
            for f in dataclasses.fields(self)
        ))

    def __sub__(self, other):
        return self + other.scaled(-1)

    def scaled(self, factor):
        return Workload(*(
            getattr(self, f.name) * factor for f in dataclasses.fields(self)
        ))

    def to_dict(self):
        return dataclasses.asdict(self)


def comparison(n):
    """One comparison node on ``n`` elements."""
    return Workload(comparisons=n, comparison_nodes=1,
                    comparison_chunks=chunks(n))


def secret_product(out, operands):
    """One product of two secrets: ``out`` elements, ``operands`` elements
    in both operands; its truncation included."""
    direct = out >= HE_DIRECT
    return Workload(
        secret_products_out=out, secret_products_in=operands,
        secret_product_nodes=1,
        secret_products_small=0 if direct else out,
        secret_product_blocks=blocks(out) if direct else 0,
        truncation_chunks=chunks(out))


def constant_product(out, operands):
    """One product with model constants, its truncation included."""
    return Workload(constant_products_out=out, constant_products_in=operands,
                    constant_product_nodes=1, truncation_chunks=chunks(out))


PRICED = (
    "comparisons", "clips", "max_windows", "max_comparisons", "sigmoids",
    "opened", "secret_products", "secret_products_small",
    "secret_product_blocks", "truncations", "macs",
)
NODES = (
    "comparison_nodes", "clip_nodes", "max_nodes", "max_levels",
    "sigmoid_nodes", "sigmoid_blocks", "product_nodes",
    "secret_product_nodes", "truncation_nodes",
)
CHUNKS = ("comparison_chunks", "clip_chunks", "max_chunks",
          "truncation_chunks")
FEATURES = PRICED + NODES + CHUNKS
_NONLINEAR = ["comparisons", "clips", "max_windows", "max_comparisons",
              "sigmoids"]
_ROUNDS = ["comparison_nodes", "clip_nodes", "max_nodes", "max_levels",
           "sigmoid_nodes"]
_SECONDS = ["comparisons", "clips", "max_comparisons", "sigmoids", "macs",
            "comparison_nodes", "sigmoid_nodes"]
USED_FEATURES = {
    "crypten": {
        "bytes": _NONLINEAR + ["opened"],
        "rounds": _ROUNDS + ["product_nodes"],
        "seconds": _SECONDS + ["opened", "product_nodes"],
    },
    "spu-semi2k": {
        "bytes": _NONLINEAR + ["secret_products", "truncations"],
        "rounds": _ROUNDS + ["secret_product_nodes", "truncation_nodes"],
        "seconds": _SECONDS + ["secret_products", "truncations",
                               "truncation_nodes"],
    },
    # CHEETAH: products by path (Beaver cache or direct blocks), the
    # sigmoid's squares per ciphertext, messages per OT instance.
    "spu-cheetah": {
        "bytes": _NONLINEAR + ["sigmoid_blocks", "secret_products_small",
                               "secret_product_blocks", "truncations"],
        "rounds": ["comparison_chunks", "clip_chunks", "max_chunks",
                   "sigmoids", "sigmoid_nodes", "sigmoid_blocks",
                   "secret_product_nodes", "secret_products_small",
                   "secret_product_blocks", "truncation_chunks"],
        "seconds": _SECONDS + ["sigmoid_blocks", "secret_products_small",
                               "secret_product_blocks", "truncations",
                               "truncation_nodes"],
    },
}


def features(workload):
    """The cost features of a ``Workload`` (see ``FEATURES``)."""
    w = workload
    products = w.constant_products_out + w.secret_products_out
    product_nodes = w.constant_product_nodes + w.secret_product_nodes
    return {
        "comparisons": w.comparisons,
        "clips": w.clips,
        "max_windows": w.max_windows,
        "max_comparisons": w.max_comparisons,
        "sigmoids": w.sigmoids,
        "opened": w.linear_in + w.constant_products_in + w.secret_products_in,
        "secret_products": w.secret_products_out,
        "secret_products_small": w.secret_products_small,
        "secret_product_blocks": w.secret_product_blocks,
        "truncations": w.linear_out + products + w.means_out,
        "macs": w.linear_macs,
        "comparison_nodes": w.comparison_nodes,
        "clip_nodes": w.clip_nodes,
        "max_nodes": w.max_nodes,
        "max_levels": w.max_levels,
        "sigmoid_nodes": w.sigmoid_nodes,
        "sigmoid_blocks": w.sigmoid_blocks,
        "product_nodes": w.linear_nodes + product_nodes,
        "secret_product_nodes": w.secret_product_nodes,
        "truncation_nodes": w.linear_nodes + product_nodes + w.mean_nodes,
        "comparison_chunks": w.comparison_chunks,
        "clip_chunks": w.clip_chunks,
        "max_chunks": w.max_chunks,
        "truncation_chunks": w.truncation_chunks,
    }
