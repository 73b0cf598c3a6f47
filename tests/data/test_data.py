"""Tests of keras_autorep.data: sources, caching, archives, pipelines.

Real archives are read from `$KERAS_AUTOREP_DATA` (default
`<repo>/../shared/data`); those tests skip when the archives are absent
(and fail under CI=true: conftest.py).
"""

import io
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_autorep.data import DatasetInfo
from keras_autorep.data import DataUnavailableError
from keras_autorep.data import ImageArrayDataset
from keras_autorep.data import load_dataset
from keras_autorep.data import make_datasets
from keras_autorep.data import make_tf_datasets
from keras_autorep.data import normalization_layer
from keras_autorep.data import sources
from keras_autorep.data import tfds_source
from keras_autorep.data.epochs import EpochPosition

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("cat", "dog", "emu")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _pixel(label, k):
    """Distinct value per (class, image) so labels can be checked."""
    return 10 + 60 * label + k


def make_tree(root, n_train=4, n_test=2, size=(6, 8)):
    """`{train,test}/<class>/<k>.png`, one uniform colour per image; the first
    test image of the last class is grayscale, the second a palette image."""
    for split, count in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                image = Image.new("RGB", size[::-1], (_pixel(label, k),) * 3)
                if split == "test" and label == 2:
                    image = image.convert(
                        "L" if k == 0 else "P", palette=Image.Palette.ADAPTIVE)
                image.save(folder / f"{k}.png")
    (root / "README.md").write_text("not an image")
    return root


def make_tar(source, archive, arcname):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return archive


def check_labels(x, y):
    """Every image is uniform with the value its (class, index) dictates."""
    assert x.dtype == np.uint8 and y.dtype == np.int32
    for image, label in zip(x, y):
        value = image[0, 0, 0]
        assert (image == value).all()
        assert (value - 10) // 60 == label


@pytest.mark.backend_agnostic
def test_image_folder_tree(tmp_path, monkeypatch):
    make_tree(tmp_path / "data" / "top")
    cache = tmp_path / "cache"
    (x_train, y_train), (x_test, y_test), info = load_dataset(
        "shapes", tmp_path / "data", cache_dir=cache)
    assert x_train.shape == (12, 6, 8, 3) and x_test.shape == (6, 6, 8, 3)
    assert info.class_names == CLASSES and info.num_classes == 3
    assert info.image_shape == (6, 8, 3)
    np.testing.assert_array_equal(np.bincount(y_train), [4, 4, 4])
    check_labels(x_train, y_train)
    check_labels(x_test, y_test)  # grayscale and palette images became RGB
    scaled = x_train.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(info.mean, scaled.mean(0), atol=1e-12)
    np.testing.assert_allclose(info.std, scaled.std(0), atol=1e-12)
    assert len(list(cache.glob("shapes-*.npz"))) == 1

    def fail(*args):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(sources, "_decode_images", fail)
    (x2, y2), _, info2 = load_dataset("shapes", tmp_path / "data",
                                      cache_dir=cache)
    np.testing.assert_array_equal(x2, x_train)
    np.testing.assert_array_equal(y2, y_train)
    assert info2 == info


def test_archive_matches_folder(tmp_path, cache_dir):
    tree = make_tree(tmp_path / "tree")
    archive = make_tar(tree, tmp_path / "shapes.tar.gz", "shapes-images")
    from_dir = load_dataset("shapes", tree, cache_dir=tmp_path / "c1")
    from_tar = load_dataset("shapes", archive, cache_dir=cache_dir)
    for (x1, y1), (x2, y2) in zip(from_dir[:2], from_tar[:2]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert from_dir[2] == from_tar[2]
    assert not list(cache_dir.rglob("*.png"))  # nothing extracted


def test_subset_and_classes(tmp_path):
    tree = make_tree(tmp_path / "tree", n_train=10, n_test=4)
    cache = tmp_path / "cache"
    (x, y), (xt, yt), _ = load_dataset("s", tree, cache_dir=cache,
                                       subset=(9, None), seed=3)
    np.testing.assert_array_equal(np.bincount(y), [3, 3, 3])
    assert len(yt) == 12
    check_labels(x, y)
    (x_again, _), _, _ = load_dataset("s", tree, cache_dir=cache,
                                      subset=(9, None), seed=3)
    np.testing.assert_array_equal(x_again, x)
    (x_other, _), _, _ = load_dataset("s", tree, cache_dir=cache,
                                      subset=(9, None), seed=4)
    assert not np.array_equal(x_other, x)

    (x, y), (xt, yt), info = load_dataset("s", tree, cache_dir=cache,
                                          classes=["emu", "cat"],
                                          subset=(5, 3))
    assert info.class_names == ("cat", "emu") and info.num_classes == 2
    assert sorted(np.bincount(y)) == [2, 3] and len(yt) == 3
    assert ((x[y == 1] - 10) // 60 == 2).all()  # emu relabelled 2 -> 1
    _, _, info = load_dataset("s", tree, cache_dir=cache, classes=2)
    assert info.class_names == ("cat", "dog")
    with pytest.raises(ValueError, match="unknown classes"):
        load_dataset("s", tree, cache_dir=cache, classes=["owl"])
    with pytest.raises(ValueError, match="subset"):
        load_dataset("s", tree, cache_dir=cache, subset=(0, 5))


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("cifar10", missing, cache_dir=tmp_path)


def test_bad_layout(tmp_path):
    (tmp_path / "junk" / "train").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "junk" / "train" / "a.png")
    with pytest.raises(ValueError, match=r"expected .*\{train,test\}"):
        load_dataset("x", tmp_path / "junk", cache_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a folder nor"):
        load_dataset("x", tmp_path / "notes.txt", cache_dir=tmp_path)
    archive = make_tar(tmp_path / "junk", tmp_path / "junk.tar.gz", "junk")
    with pytest.raises(ValueError, match="expected"):
        load_dataset("x", archive, cache_dir=tmp_path)
    (tmp_path / "fake.tgz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="not a readable tar"):
        load_dataset("x", tmp_path / "fake.tgz", cache_dir=tmp_path)


def test_mixed_image_sizes_rejected(tmp_path):
    tree = make_tree(tmp_path / "tree")
    Image.new("RGB", (5, 5)).save(tree / "train" / "cat" / "odd.png")
    with pytest.raises(ValueError, match="same size"):
        load_dataset("x", tree, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("bad_name", ["../evil.png", "/tmp/evil.png"])
def test_unsafe_archive_rejected(tmp_path, bad_name):
    tree = make_tree(tmp_path / "tree")
    archive = tmp_path / "evil.tar.gz"
    payload = b"evil"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="evil-images")
        member = tarfile.TarInfo(bad_name)
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    with pytest.raises(ValueError, match="unsafe member"):
        load_dataset("x", archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "evil.png").exists()


def make_tiny_tree(root):
    """A two-class Tiny-ImageNet-200 tree with a grayscale image."""
    wnids = ["n02", "n01"]  # unsorted on purpose: labels follow sorted wnids
    (root / "wnids.txt").parent.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for label, wnid in enumerate(sorted(wnids)):
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for k in range(3):
            image = Image.new("RGB", (8, 8), (_pixel(label, k),) * 3)
            image.convert("L" if k == 0 else "RGB").save(
                folder / f"{wnid}_{k}.JPEG", quality=100)
    (root / "val" / "images").mkdir(parents=True)
    annotations = []
    for i, label in enumerate([1, 0, 1]):
        Image.new("RGB", (8, 8), (_pixel(label, 0),) * 3).save(
            root / "val" / "images" / f"val_{i}.JPEG", quality=100)
        annotations.append(f"val_{i}.JPEG\t{sorted(wnids)[label]}\t0\t0\t7\t7")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations))
    (root / "test" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "test" / "images" / "test_0.JPEG")
    return root


def test_tiny_imagenet_tree(tmp_path):
    tree = make_tiny_tree(tmp_path / "tiny-imagenet-200")
    for data_dir in (tmp_path, make_tar(tree, tmp_path / "t.tar.gz", "tiny")):
        # The layout, not the name, makes it Tiny-ImageNet; the name
        # "tiny_imagenet" would ask for the real dataset's counts.
        (x, y), (xt, yt), info = load_dataset(
            "tiny", data_dir, cache_dir=tmp_path / "cache")
        assert info.class_names == ("n01", "n02")
        assert x.shape == (6, 8, 8, 3) and xt.shape == (3, 8, 8, 3)
        np.testing.assert_array_equal(yt, [1, 0, 1])
        np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])
        for images, labels in ((x, y), (xt, yt)):  # JPEG: close values
            means = images.reshape(len(images), -1).mean(axis=1)
            np.testing.assert_allclose(
                means, [_pixel(label, 0) for label in labels], atol=4)


def test_cifar10_archive(cifar10_archive, cache_dir):
    (x, y), (xt, yt), info = load_dataset(
        "cifar10", cifar10_archive, cache_dir=cache_dir, subset=(200, 100),
        verbose=0)
    assert x.shape == (200, 32, 32, 3) and xt.shape == (100, 32, 32, 3)
    assert x.dtype == np.uint8 and y.dtype == np.int32
    assert info.num_classes == 10 and info.image_shape == (32, 32, 3)
    assert info.class_names == ("airplane", "automobile", "bird", "cat",
                                "deer", "dog", "frog", "horse", "ship",
                                "truck")
    np.testing.assert_array_equal(np.bincount(y), [20] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [10] * 10)
    assert 0.3 < min(info.mean) < max(info.mean) < 0.7
    assert 0.15 < min(info.std) < max(info.std) < 0.35


def test_tiny_imagenet_archive(tiny_imagenet_archive, cache_dir):
    # These two classes hold 6 grayscale train images.
    (x, y), (xt, yt), info = load_dataset(
        "tiny_imagenet", tiny_imagenet_archive, cache_dir=cache_dir,
        classes=["n01644900", "n01698640"], verbose=0)
    assert x.shape == (1000, 64, 64, 3) and xt.shape == (100, 64, 64, 3)
    assert info.class_names == ("n01644900", "n01698640")
    np.testing.assert_array_equal(np.bincount(y), [500, 500])
    np.testing.assert_array_equal(np.bincount(yt), [50, 50])
    gray = (x == x[..., :1]).all(axis=(1, 2, 3))
    assert gray.sum() >= 6


def test_cifar100_through_tfds(cache_dir, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds_source, "_network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=12):
        (x, y), (xt, yt), info = load_dataset("cifar100", cache_dir=cache_dir)
    assert x.shape == (12, 32, 32, 3) and xt.shape == (12, 32, 32, 3)
    assert x.dtype == np.uint8 and y.dtype == np.int32
    assert info.num_classes == 100 and len(info.class_names) == 100
    assert ((0 <= y) & (y < 100)).all()


def test_no_network_fails_fast(cache_dir, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared",
                        lambda self: False)
    monkeypatch.setattr(tfds_source, "_network_available", lambda: False)
    start = time.monotonic()
    with pytest.raises(DataUnavailableError, match="--data-dir"):
        load_dataset("cifar10", cache_dir=cache_dir)
    assert time.monotonic() - start < 10


def test_network_check_is_bounded(monkeypatch):
    calls = []

    def refuse(address, timeout):
        calls.append(timeout)
        raise OSError("unreachable")

    monkeypatch.setattr(tfds_source.socket, "create_connection", refuse)
    assert tfds_source._network_available() is False
    assert calls and all(0 < t <= 5 for t in calls)


def test_no_tfds_or_no_source(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataUnavailableError, match="--data-dir"):
        load_dataset("cifar100", cache_dir=tmp_path)
    with pytest.raises(DataUnavailableError, match="--data-dir"):
        load_dataset("tiny_imagenet", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", cache_dir=tmp_path)


# ---------------------------------------------------------------- pipelines

N = 20


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (N, 12, 10, 3), dtype=np.uint8)  # no zeros
    y = np.arange(N, dtype=np.int32)  # label = index, to find the source
    info = DatasetInfo("rand", N, (12, 10, 3), tuple(map(str, range(N))),
                       (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    return (x, y), (x[:7], y[:7]), info


def is_crop_flip(out, image, pad):
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    for row in range(2 * pad + 1):
        for col in range(2 * pad + 1):
            crop = padded[row:row + height, col:col + width]
            if np.array_equal(out, crop) or np.array_equal(out, crop[:, ::-1]):
                return True
    return False


def collect(batches):
    xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in batches))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("pipeline", ["tf", "numpy"])
def test_pipeline_train_split(arrays, pipeline):
    train, test, info = arrays
    train_ds, _ = make_datasets(train, test, info, batch_size=8, seed=1,
                                pipeline=pipeline)
    if pipeline == "numpy":
        train_ds.on_epoch_begin()  # Keras calls it at every epoch start
    batches = list(train_ds) if pipeline == "tf" else [
        train_ds[i] for i in range(len(train_ds))]
    assert [len(b[1]) for b in batches] == [8, 8, 4]
    x, y = collect(batches)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.shape == (N, 12, 10, 3) and 0 <= x.min() and x.max() <= 1
    assert sorted(y) == list(range(N)) and list(y) != list(range(N))
    changed = 0
    for image, label in zip(x, y):
        source = train[0][label]
        assert is_crop_flip(np.round(image * 255).astype(np.uint8), source, 4)
        changed += not np.array_equal(image * 255, source)
    assert changed > N // 2
    if pipeline == "numpy":
        train_ds.on_epoch_begin()
    x2, y2 = collect(list(train_ds) if pipeline == "tf" else
                     [train_ds[i] for i in range(len(train_ds))])
    assert list(y2) != list(y)  # reshuffled and re-augmented every epoch


@pytest.mark.parametrize("pipeline", ["tf", "numpy"])
def test_a_resumed_train_split_goes_on_at_its_batch(arrays, pipeline):
    """An epoch started at batch 1 (a resumed fit) yields the rest of that
    epoch as before, and the next epoch as before."""
    train, test, info = arrays
    position = EpochPosition()
    train_ds, _ = make_datasets(train, test, info, batch_size=8, seed=1,
                                pipeline=pipeline, position=position)

    def epoch():
        if pipeline == "tf":
            return collect(train_ds)
        train_ds.on_epoch_begin()  # as Keras at every epoch start
        return collect(train_ds[i] for i in range(train_ds.num_batches))

    epochs = [epoch() for _ in range(3)]
    position.begin(1, skip=1)
    x, y = epoch()
    np.testing.assert_array_equal(x, epochs[1][0][8:])
    np.testing.assert_array_equal(y, epochs[1][1][8:])
    np.testing.assert_array_equal(epoch()[0], epochs[2][0])


def test_pipelines_agree_without_augmentation(arrays):
    train, test, info = arrays
    tf_train, tf_test = make_tf_datasets(train, test, info, 8, augment=False)
    np_train, np_test = make_datasets(train, test, info, 8, augment=False,
                                      pipeline="numpy")
    assert isinstance(np_train, ImageArrayDataset)
    x_tf, y_tf = collect(tf_test)
    x_np, y_np = collect(np_test[i] for i in range(len(np_test)))
    np.testing.assert_array_equal(y_tf, test[1])
    np.testing.assert_array_equal(x_tf, x_np)
    np.testing.assert_array_equal(x_np, test[0].astype(np.float32) / 255)
    x, y = collect(tf_train)
    np.testing.assert_array_equal(x, train[0][y].astype(np.float32) / 255)


@pytest.mark.backend_agnostic
def test_make_datasets_choice_and_checks(arrays):
    train, test, info = arrays
    train_ds, _ = make_datasets(train, test, info, 4)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        assert isinstance(train_ds, tf.data.Dataset)
    else:
        assert isinstance(train_ds, ImageArrayDataset)
    with pytest.raises(ValueError, match="pipeline"):
        make_datasets(train, test, info, 4, pipeline="torch")
    with pytest.raises(ValueError, match="shape"):
        make_datasets((train[0][:, :8], train[1]), test, info, 4,
                      pipeline="numpy")


@pytest.mark.backend_agnostic
def test_normalization_layer(arrays):
    train, _, info = arrays
    x = train[0].astype(np.float32)
    out = np.asarray(normalization_layer(info)(x / 255))
    expected = (x / 255 - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    raw = np.asarray(normalization_layer(info, pixel_scale=255.0)(x))
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-4)
    layer = normalization_layer(info)
    restored = keras.layers.Normalization.from_config(layer.get_config())
    np.testing.assert_allclose(np.asarray(restored(x / 255)), out, atol=1e-6)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("pipeline", ["tf", "numpy"])
def test_pipelines_train_a_model(arrays, pipeline):
    train, test, info = arrays
    train_ds, test_ds = make_datasets(train, test, info, 8, pipeline=pipeline)
    model = keras.Sequential([
        keras.Input(info.image_shape),
        normalization_layer(info),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(info.num_classes),
    ])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    history = model.fit(train_ds, validation_data=test_ds, epochs=2,
                        shuffle=False, verbose=0)
    assert np.isfinite(history.history["val_loss"]).all()


def test_import_without_tensorflow(tmp_path):
    """The GPU machine has JAX and Pillow but no TensorFlow."""
    pytest.importorskip("jax")
    make_tree(tmp_path / "tree")
    script = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                    raise ModuleNotFoundError(name, name=name)

        sys.meta_path.insert(0, Block())
        from keras_autorep.data import (
            DataUnavailableError, ImageArrayDataset, load_dataset,
            make_datasets)
        train, test, info = load_dataset("shapes", {str(tmp_path / "tree")!r},
                                         cache_dir={str(tmp_path / "c")!r})
        train_ds, _ = make_datasets(train, test, info, 4)
        assert isinstance(train_ds, ImageArrayDataset)
        assert train_ds[0][0].shape == (4, 6, 8, 3)
        try:
            load_dataset("cifar10", cache_dir={str(tmp_path / "c")!r})
        except DataUnavailableError as e:
            assert "--data-dir" in str(e)
        else:
            raise AssertionError("no DataUnavailableError")
        assert not any(m.startswith("tensorflow") for m in sys.modules)
        print("OK")
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr


def test_classes_far_out_of_balance_get_a_warning(tmp_path):
    import warnings

    balanced = make_tree(tmp_path / "balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("shapes", balanced, cache_dir=tmp_path / "cache")
    unbalanced = make_tree(tmp_path / "unbalanced", n_train=6)
    for k in range(4):  # CLASSES[1] keeps 2 of its 6 training images
        (unbalanced / "train" / CLASSES[1] / f"{k}.png").unlink()
    with pytest.warns(UserWarning, match=(
            rf"far out of balance: '{CLASSES[1]}' has 2 images, "
            rf"'{CLASSES[0]}' 6")):
        (_, y), _, _ = load_dataset("shapes", unbalanced,
                                    cache_dir=tmp_path / "cache")
    assert np.bincount(y).tolist() == [6, 2, 6]
