"""Data integrity: damaged archives, incomplete datasets, damaged caches.

Damaged archives are made from the real CIFAR-10 archive in a temporary
folder (copied, then cut short or overwritten), so the checks meet real
data; those tests skip when the archive is absent.
"""

import hashlib
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image
from test_data import make_tiny_tree, make_tree

from keras_autorep.data import load_dataset, sources
from keras_autorep.data.archives import SUMS_FILENAME, check_sha256sums
from keras_autorep.data.counts import KNOWN_COUNTS

SUBSET = (200, 100)


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[int(0.6 * len(data)):]
    elif how == "overwritten":  # 64 bytes in the middle of the stream
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in
                                         data[middle:middle + 64])
    else:  # "crc": one bit of the gzip trailer's CRC-32, data intact
        data[-6] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "overwritten", "crc"])
def test_damaged_archive_is_refused(cifar10_archive, tmp_path, how):
    archive = tmp_path / "cifar10-images.tar.gz"
    shutil.copyfile(cifar10_archive, archive)
    _damage(archive, how)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError,
                       match="damaged or incomplete archive") as error:
        load_dataset("cifar10", archive, cache_dir=cache, subset=SUBSET,
                     verbose=0)
    assert "\n" not in str(error.value)
    assert not list(cache.glob("*.npz"))  # nothing cached from it


def test_known_dataset_short_of_images_is_refused(cifar10_archive, tmp_path):
    """A complete, valid archive that lacks one test image of CIFAR-10."""
    archive = tmp_path / "cifar10-part.tar"
    with tarfile.open(cifar10_archive, "r|gz") as source, \
            tarfile.open(archive, "w") as copy:
        dropped = None
        for member in source:
            if dropped is None and "/test/cat/" in member.name:
                dropped = member.name
                continue
            copy.addfile(member, source.extractfile(member))
    with pytest.raises(ValueError, match=r"999 test images of class 'cat', "
                       r"cifar10 has 1,000 per class \(9,999 of 10,000"):
        load_dataset("cifar10", archive, cache_dir=tmp_path / "cache",
                     subset=SUBSET, verbose=0)
    # Under another name the same images load (only known names are counted).
    _, (_, y_test), _ = load_dataset("cifar10_part", archive,
                                     cache_dir=tmp_path / "cache",
                                     subset=SUBSET, verbose=0)
    assert len(y_test) == SUBSET[1]


def test_real_archive_counts_and_checksum(cifar10_archive, tmp_path):
    classes, per_train, per_test = KNOWN_COUNTS["cifar10"]
    assert (classes * per_train, classes * per_test) == (50_000, 10_000)
    sums = cifar10_archive.parent / SUMS_FILENAME
    if sums.is_file():  # the shared data folder has one
        digest = hashlib.sha256(cifar10_archive.read_bytes()).hexdigest()
        assert check_sha256sums(cifar10_archive) == digest
        assert f"{digest}  {cifar10_archive.name}" in sums.read_text()
    # A copy without a sums file is checked by its stream alone.
    copy = tmp_path / cifar10_archive.name
    shutil.copyfile(cifar10_archive, copy)
    assert check_sha256sums(copy) is None


def test_sha256sums_mismatch_is_refused(cifar10_archive, tmp_path):
    archive = tmp_path / "cifar10-images.tar.gz"
    shutil.copyfile(cifar10_archive, archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp_path / SUMS_FILENAME).write_text(
        f"{'0' * 64}  other.tar.gz\n{digest}  {archive.name}\n")
    assert check_sha256sums(archive) == digest
    (tmp_path / SUMS_FILENAME).write_text(f"{'0' * 64} *{archive.name}\n")
    with pytest.raises(ValueError, match=f"SHA-256 {digest} differs"):
        load_dataset("cifar10", archive, cache_dir=tmp_path / "cache",
                     subset=SUBSET, verbose=0)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_undecodable_image_is_named(tmp_path, damage):
    tree = make_tree(tmp_path / "tree")
    image = tree / "train" / "dog" / "1.png"
    if damage == "garbage":
        image.write_bytes(b"not an image at all")
    else:
        Image.new("RGB", (64, 64), (1, 2, 3)).save(image)
        image.write_bytes(image.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"cannot decode train/dog/1\.png"):
        load_dataset("shapes", tree, cache_dir=tmp_path / "cache")


def test_tiny_imagenet_missing_val_image(tmp_path):
    tree = make_tiny_tree(tmp_path / "tiny-imagenet-200")
    (tree / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(ValueError, match=r"1 images named in "
                       r"val_annotations\.txt are missing, e\.g\. "
                       r"tiny-imagenet-200/val/images/val_1\.JPEG"):
        load_dataset("tiny", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage", ["truncated", "labels"])
def test_damaged_cache_is_decoded_again(tmp_path, monkeypatch, damage):
    tree = make_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    first = load_dataset("shapes", tree, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    if damage == "truncated":
        cache_file.write_bytes(cache_file.read_bytes()[:-100])
    else:  # readable, but a label out of range
        with np.load(cache_file) as f:
            arrays = dict(f)
        arrays["y_train"][0] = 99
        with open(cache_file, "wb") as f:
            np.savez(f, **arrays)
    decoded = []
    decode = sources._decode_images
    monkeypatch.setattr(sources, "_decode_images",
                        lambda *a: decoded.append(1) or decode(*a))
    again = load_dataset("shapes", tree, cache_dir=cache)
    assert decoded == [1]
    for (x1, y1), (x2, y2) in zip(first[:2], again[:2]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    load_dataset("shapes", tree, cache_dir=cache)  # rewritten: a hit
    assert decoded == [1]
