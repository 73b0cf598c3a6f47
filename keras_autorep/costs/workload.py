"""What one private inference computes, per op class, as features.

``Workload`` is the per-example op count of a network (what
``keras_autorep.pi.onnx_workload`` reads off an exported ONNX graph, or
what ``keras_autorep.costs.sites`` derives for a site); ``features``
turns it into the cost features the calibration prices (see
``keras_autorep.costs.model``).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Workload:
    """Per-example op counts of one network (see the module docstring).

    ``*_out``: output elements; ``*_in``: elements of both operands (what
    Beaver-triple protocols open); ``*_nodes``: graph nodes (rounds).
    """

    comparisons: int = 0
    comparison_nodes: int = 0
    secret_products_out: int = 0
    secret_products_in: int = 0
    secret_product_nodes: int = 0
    constant_products_out: int = 0
    constant_products_in: int = 0
    constant_product_nodes: int = 0
    linear_out: int = 0
    linear_in: int = 0
    linear_macs: int = 0
    linear_nodes: int = 0
    means_out: int = 0
    mean_nodes: int = 0

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


FEATURES = (
    "comparisons", "opened", "secret_products", "truncations", "macs",
    "comparison_nodes", "product_nodes", "secret_product_nodes",
    "truncation_nodes",
)
_SPU = {
    "bytes": ["comparisons", "secret_products", "truncations",
              "comparison_nodes", "secret_product_nodes"],
    # CHEETAH's comparisons and products take more rounds on larger
    # tensors (they run in chunks): elements are round features too.
    "rounds": ["comparison_nodes", "secret_product_nodes",
               "truncation_nodes", "comparisons", "secret_products"],
    "seconds": ["comparisons", "secret_products", "truncations", "macs",
                "comparison_nodes", "truncation_nodes"],
}
USED_FEATURES = {
    "crypten": {
        "bytes": ["comparisons", "opened"],
        "rounds": ["comparison_nodes", "product_nodes"],
        "seconds": ["comparisons", "opened", "macs", "comparison_nodes",
                    "product_nodes"],
    },
    "spu-semi2k": _SPU,
    "spu-cheetah": _SPU,
}


def features(workload):
    """The cost features of a ``Workload`` (see ``FEATURES``)."""
    w = workload
    products = w.constant_products_out + w.secret_products_out
    product_nodes = w.constant_product_nodes + w.secret_product_nodes
    return {
        "comparisons": w.comparisons,
        "opened": w.linear_in + w.constant_products_in + w.secret_products_in,
        "secret_products": w.secret_products_out,
        "truncations": w.linear_out + products + w.means_out,
        "macs": w.linear_macs,
        "comparison_nodes": w.comparison_nodes,
        "product_nodes": w.linear_nodes + product_nodes,
        "secret_product_nodes": w.secret_product_nodes,
        "truncation_nodes": w.linear_nodes + product_nodes + w.mean_nodes,
    }
