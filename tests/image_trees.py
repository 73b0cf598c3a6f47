"""Small ImageNet-like image trees for the streamed-data tests, with the
kinds of bad files real trees hold."""

import io

import numpy as np
from PIL import Image

CLASSES = ("n01440764", "n01443537", "n01484850")
# The files ``write_bad_images`` writes that TensorFlow cannot decode.
UNDECODABLE = ("truncated.JPEG", "empty.JPEG", "notes.JPEG")


CLASSES = ("n01440764", "n01443537", "n01484850")


def write_tree(root, train=4, test=2):
    """An ImageNet-like tree ``{train,val}/<wnid>/*``: random sizes, some
    grayscale, PNG and RGBA files among the JPEGs."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", test)):
        for wnid in CLASSES:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = rng.integers(20, 90, 2)
                pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
                image = Image.fromarray(pixels)
                name = f"{wnid}_{i}.JPEG"
                if i == 1:
                    image = image.convert("L")
                elif i == 2:
                    image, name = image.convert("RGBA"), f"{wnid}_{i}.png"
                image.save(folder / name)
    (root / "test").mkdir()  # ImageNet's unlabelled test images
    Image.new("RGB", (8, 8)).save(root / "test" / "unlabelled.JPEG")
    return root


def write_bad_images(folder):
    """Beside a tree's images: a truncated JPEG, an empty file and a text
    file (none decodes), and a PNG named ``.JPEG`` and a CMYK JPEG (both
    decode); returns ``folder``."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8))
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG")
    (folder / "truncated.JPEG").write_bytes(
        jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
    (folder / "empty.JPEG").write_bytes(b"")
    (folder / "notes.JPEG").write_text("not an image\n")
    image.save(folder / "png.JPEG", format="PNG")
    image.convert("CMYK").save(folder / "cmyk.JPEG", format="JPEG")
    return folder
