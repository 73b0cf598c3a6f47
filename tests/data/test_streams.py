"""keras_autorep.data.streams: datasets streamed from image files (image
trees of any image size, tensorflow-datasets' imagenet2012)."""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_autorep.data import DataUnavailableError, load_image_streams
from image_trees import (  # tests/ helpers
    CLASSES,
    UNDECODABLE,
    write_bad_images,
    write_tree,
)
from keras_autorep.data.decoding import CROP_FRACTION, UnreadableImagesError
from keras_autorep.data.epochs import EpochPosition
from keras_autorep.data.streams import IMAGENET_ARCHIVES

def batches(dataset):
    pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
    return (np.concatenate([x for x, _ in pairs]),
            np.concatenate([y for _, y in pairs]))


def test_tree_streams_yield_unit_images_with_measured_statistics(tmp_path):
    tree = write_tree(tmp_path / "tree")
    train, test, info = load_image_streams("mytree", tree, 24)
    assert (len(train), len(test)) == (12, 6)
    assert info.class_names == CLASSES and info.image_shape == (24, 24, 3)
    images, labels = batches(test.dataset(4))
    assert images.shape == (6, 24, 24, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(labels, test.labels)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(images, batches(test.dataset(5))[0])
    everything = train.take(len(train))[0]
    np.testing.assert_allclose(info.mean, everything.mean(axis=(0, 1, 2)),
                               rtol=1e-5)
    np.testing.assert_allclose(info.std, everything.std(axis=(0, 1, 2)),
                               rtol=1e-5)


def test_training_pipeline_is_seeded_and_reshuffled(tmp_path):
    train, _, _ = load_image_streams("mytree", write_tree(tmp_path / "t"), 16)
    dataset = train.dataset(5, training=True, seed=3)
    first, second = batches(dataset), batches(dataset)
    again = batches(train.dataset(5, training=True, seed=3))
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], second[0])
    assert sorted(first[1]) == sorted(second[1]) == sorted(train.labels)


def test_evaluation_crop_is_the_center_of_the_resized_image(tmp_path):
    tree = write_tree(tmp_path / "tree")
    # 100 rows x 40 columns: black bands above and below a white middle
    # of rows 30..69; the center crop at 16 keeps rows 33..67 only.
    pixels = np.zeros((100, 40, 3), np.uint8)
    pixels[30:70] = 255
    Image.fromarray(pixels).save(tree / "val" / CLASSES[0] / "a_band.png")
    _, test, _ = load_image_streams("mytree", tree, 16)
    crop = test.take(1)[0][0]
    assert crop.min() > 0.95, (CROP_FRACTION, crop.min())


def test_subset_classes_and_holdout(tmp_path):
    tree = write_tree(tmp_path / "tree", train=6)
    train, test, info = load_image_streams(
        "mytree", tree, 16, subset=(6, None), classes=2, seed=1)
    assert info.num_classes == 2 and (len(train), len(test)) == (6, 4)
    assert sorted(train.labels) == [0, 0, 0, 1, 1, 1]
    assert sorted(batches(train.dataset(4, training=True))[1]) == [
        0, 0, 0, 1, 1, 1]
    images, labels = train.sample(4, seed=5)
    assert images.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(labels, train.sample(4, seed=5)[1])
    fit, held = train.holdout(0.3, seed=0)
    assert (len(fit), len(held)) == (4, 2)
    assert set(fit.indices).isdisjoint(held.indices)
    assert set(fit.indices) | set(held.indices) == set(train.indices)


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_streams("imagenet2012", tmp_path / "none")
    archive = tmp_path / "data.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(ValueError, match="extract the archive"):
        load_image_streams("imagenet2012", archive)
    with pytest.raises(ValueError, match="image_size must be an int >= 8"):
        load_image_streams("imagenet2012", tmp_path, image_size=4)
    with pytest.raises(ValueError, match="no dataset tree found"):
        load_image_streams("imagenet2012", tmp_path)
    with pytest.raises(DataUnavailableError, match=IMAGENET_ARCHIVES[0]):
        load_image_streams("imagenet2012", tfds_data_dir=tmp_path / "tfds")


def test_imagenet2012_from_the_manual_download_folder(tmp_path):
    """The tensorflow-datasets path (prepared from the archives of the
    manual-download folder), on its mock data: random images of random
    sizes, labels of the 1000 classes."""
    manual = tmp_path / "manual"
    manual.mkdir()
    for archive in IMAGENET_ARCHIVES:
        (manual / archive).write_bytes(b"")
    with tfds.testing.mock_data(num_examples=12):
        train, test, info = load_image_streams(
            "imagenet2012", manual, 32, subset=(8, None))
        assert (len(train), len(test)) == (8, 12)
        assert info.num_classes == 1000 and info.class_names[0] == (
            "n01440764")
        images, labels = batches(test.dataset(5))
        np.testing.assert_array_equal(labels, test.labels)
        assert images.shape == (12, 32, 32, 3)
        keras.utils.set_random_seed(0)  # a global seed, as in the recipes
        dataset = train.dataset(3, training=True, seed=1)
        first, second = batches(dataset)[1], batches(dataset)[1]
        assert sorted(first) == sorted(second) == sorted(train.labels)
        assert list(first) != list(second)  # each epoch its own order
        # Samples of a tensorflow-datasets split are its first records.
        np.testing.assert_array_equal(train.sample(3, seed=7)[1],
                                      train.labels[:3])


def test_image_files_that_do_not_decode_are_named_and_left_out(tmp_path):
    tree = write_tree(tmp_path / "tree")
    write_bad_images(tree / "train" / CLASSES[0])
    cache = tmp_path / "cache"
    train, test, info = load_image_streams("mytree", tree, 16,
                                           cache_dir=cache)
    reasons = dict(info.unreadable)
    bad = {name: f"train/{CLASSES[0]}/{name}" for name in UNDECODABLE}
    assert sorted(reasons) == sorted(bad.values())
    assert "Invalid JPEG data" in reasons[bad["truncated.JPEG"]]
    assert reasons[bad["empty.JPEG"]] == "Input is empty."
    assert "Unknown image file format" in reasons[bad["notes.JPEG"]]
    # The PNG named .JPEG and the CMYK JPEG decode: 12 + 2 images train.
    assert (len(train), len(test)) == (14, 6)
    assert sorted(batches(train.dataset(4, training=True))[1]) == sorted(
        train.labels)
    assert len(list(cache.glob("unreadable-*.json"))) == 1  # checked once
    again = load_image_streams("mytree", tree, 16, cache_dir=cache)[2]
    assert again.unreadable == info.unreadable
    with pytest.raises(UnreadableImagesError) as error:
        load_image_streams("mytree", tree, 16, cache_dir=cache,
                           strict_images=True)
    message = str(error.value)
    assert message.startswith(f"{tree} holds 3 image file(s) that do not "
                              "decode: ")
    assert f"{bad['empty.JPEG']} (Input is empty.)" in message
    assert "\n" not in message


def test_a_resumed_training_pipeline_goes_on_at_its_batch(tmp_path):
    train = load_image_streams("mytree", write_tree(tmp_path / "t"), 16)[0]
    position = EpochPosition()
    dataset = train.dataset(5, training=True, seed=3, position=position)
    epochs = [batches(dataset) for _ in range(3)]  # epochs 0, 1, 2
    position.begin(1, skip=1)
    resumed = batches(dataset)
    np.testing.assert_array_equal(resumed[0], epochs[1][0][5:])
    np.testing.assert_array_equal(resumed[1], epochs[1][1][5:])
    np.testing.assert_array_equal(batches(dataset)[0], epochs[2][0])
