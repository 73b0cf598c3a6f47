"""A PI spec holds its model's count row for row: ``count_from_spec``
of what ``write_pi_spec`` wrote is ``count_relus`` of the model."""

import json
import warnings

import numpy as np
import pytest

from graph_models import mixed_model, sequential_cnn
from keras_autorep.export import (
    count_from_spec,
    read_pi_spec,
    spec_from_count,
    write_pi_spec,
)
from keras_autorep.graph import (
    count_relus,
    harden,
    random_masks,
    replace_relus,
    set_masks,
    site_sizes,
)
from tiny_models import tiny_cnn

pytestmark = pytest.mark.backend_agnostic


def partly_kept(model, activations=("relu",), seed=0):
    """``model`` hardened with about half of every site kept."""
    student = replace_relus(model, activations=activations)
    counts = {name: size // 2 for name, size in site_sizes(student).items()}
    set_masks(student, random_masks(student, counts, seed=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mixed_model's traced ReLUs
        return harden(student)


MODELS = {
    "plain": sequential_cnn,
    "hardened": lambda: partly_kept(tiny_cnn()),
    "mixed": mixed_model,
    "mixed_hardened": lambda: partly_kept(
        mixed_model(), ("relu", "relu6", "silu")),
}


@pytest.mark.parametrize("name", MODELS)
def test_the_spec_gives_the_count_back_field_for_field(name, tmp_path):
    model = MODELS[name]()
    count = count_relus(model)
    path = write_pi_spec(model, tmp_path, max_inline_indices=16)
    read = count_from_spec(read_pi_spec(path))
    assert read.rows == count.rows and read.other == count.other
    assert read.totals() == count.totals()
    assert (read.convention, read.smooth_elements) == (
        count.convention, count.smooth_elements)
    assert read == count
    assert read.table() == count.table()
    if name == "mixed_hardened":
        rows = {row.layer: row for row in count.rows}
        assert rows["hidden"].traced and rows["relu6"].comparisons > 0
        assert rows["conv_silu_silu"].activation == "silu"
        assert {row.layer for row in count.other} == {
            "pool", "conv_leaky", "gelu"}
        assert count.smooth_elements and count.max_comparisons


def test_spec_from_count_is_what_read_pi_spec_reads(tmp_path):
    model = partly_kept(tiny_cnn())
    count = count_relus(model)
    made = spec_from_count(model, count)
    read = read_pi_spec(write_pi_spec(model, tmp_path, count=count))
    for made_site, read_site in zip(made["sites"], read["sites"]):
        np.testing.assert_array_equal(made_site.pop("kept_indices"),
                                      read_site.pop("kept_indices"))
        np.testing.assert_array_equal(made_site.pop("coefficients"),
                                      read_site.pop("coefficients"))
    assert made == read


def test_a_version_4_spec_reads_with_defaults(tmp_path):
    """Before version 5 a spec had no labels, site comparisons or fused
    flags on other rows: plain kinds, 0 and ``False``."""
    model = sequential_cnn()
    count = count_relus(model)
    path = write_pi_spec(model, tmp_path)
    raw = json.loads(path.read_text())
    raw["format_version"] = 4
    for site in raw["sites"]:
        del site["label"], site["comparisons"]
    for entry in raw["other"]:
        del entry["fused"]
    path.write_text(json.dumps(raw))
    read = count_from_spec(read_pi_spec(path))
    assert [row.kind for row in read.rows] == [
        "fused relu" if row.fused else "ReLU" for row in count.rows]
    assert read.totals() == count.totals() and read.other == count.other
