"""Dataset tree layouts, recognised from lists of relative file paths.

Pure path logic shared by folder and archive sources (no I/O of images):

* image folder: ``<root>/{train,test}/<class>/<image>``, classes are the
  sorted folder names under ``train/``; ``val/`` may stand for ``test/``
  (ImageNet's ``val/<wnid>/`` arrangement);
* Tiny-ImageNet-200: ``<root>/wnids.txt``, ``<root>/train/<wnid>/images/*``,
  ``<root>/val/images/*`` labelled by ``<root>/val/val_annotations.txt``
  (the validation split serves as the test split); classes are the sorted
  wnids.

Paths are POSIX strings relative to the scanned folder or archive; ``root``
is such a prefix, ``""`` or ending in ``"/"``.
"""

import numpy as np

IMAGE_FOLDER = "image_folder"
TINY_IMAGENET = "tiny_imagenet"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Folder names of the test split of an image-folder tree, in preference
# order.
TEST_FOLDERS = ("test", "val")

LAYOUT_HELP = (
    "expected an image-folder tree '{train,test}/<class>/*.jpg|png' ('val/' "
    "may stand for 'test/') or the "
    "Tiny-ImageNet-200 tree ('wnids.txt', 'train/<wnid>/images/*.JPEG', "
    "'val/images/*.JPEG', 'val/val_annotations.txt'), as a folder or a "
    ".tar.gz/.tgz/.tar archive of one"
)


def _is_image(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def find_root(paths):
    """Finds the dataset tree among relative file paths.

    Args:
        paths: iterable of POSIX file paths relative to the scanned location.

    Returns:
        `(root, kind)`: the prefix of the tree (shallowest match) and
        `IMAGE_FOLDER` or `TINY_IMAGENET`.

    Raises:
        ValueError: if no supported layout is present.
    """
    paths = set(paths)
    tiny = [
        p[: -len("wnids.txt")]
        for p in paths
        if p.rsplit("/", 1)[-1] == "wnids.txt"
        and p[: -len("wnids.txt")] + "val/val_annotations.txt" in paths
    ]
    if tiny:
        return min(tiny, key=lambda r: (r.count("/"), r)), TINY_IMAGENET
    splits = {}
    for p in paths:
        parts = p.split("/")
        if (len(parts) >= 3 and parts[-3] in ("train",) + TEST_FOLDERS
                and _is_image(p)):
            root = "".join(part + "/" for part in parts[:-3])
            splits.setdefault(root, set()).add(parts[-3])
    folders = [r for r, found in splits.items()
               if "train" in found and found & set(TEST_FOLDERS)]
    if folders:
        return min(folders, key=lambda r: (r.count("/"), r)), IMAGE_FOLDER
    raise ValueError(f"no dataset tree found: {LAYOUT_HELP}")


def index_files(paths, root, kind, read_text):
    """Lists the labelled image files of both splits.

    Args:
        paths: iterable of POSIX file paths relative to the scanned location.
        root: tree prefix returned by `find_root`.
        kind: layout returned by `find_root`.
        read_text: callable mapping a relative path to the file's text (used
            for the Tiny-ImageNet `wnids.txt` and `val_annotations.txt`).

    Returns:
        `(class_names, train, test)`; each split is `(files, labels)` with
        `files` a sorted list of relative paths and `labels` int32 indices
        into `class_names`.
    """
    if kind == TINY_IMAGENET:
        class_names = sorted(read_text(root + "wnids.txt").split())
        label_of = {name: i for i, name in enumerate(class_names)}
        train = []
        for p in paths:
            parts = p[len(root):].split("/")
            if (p.startswith(root) and len(parts) == 4 and parts[0] == "train"
                    and parts[2] == "images" and _is_image(p)):
                if parts[1] not in label_of:
                    raise ValueError(
                        f"{p}: class {parts[1]!r} not in wnids.txt")
                train.append((p, label_of[parts[1]]))
        test = []
        for line in read_text(root + "val/val_annotations.txt").splitlines():
            fields = line.split("\t")
            if len(fields) >= 2:
                if fields[1] not in label_of:
                    raise ValueError(
                        f"val_annotations.txt: class {fields[1]!r} not in "
                        "wnids.txt"
                    )
                test.append((root + "val/images/" + fields[0],
                             label_of[fields[1]]))
        listed = set(paths)
        missing = [p for p, _ in test if p not in listed]
        if missing:
            raise ValueError(
                f"{len(missing):,} images named in val_annotations.txt are "
                f"missing, e.g. {missing[0]}")
    else:
        by_split = {folder: [] for folder in ("train",) + TEST_FOLDERS}
        for p in paths:
            parts = p[len(root):].split("/")
            if (p.startswith(root) and len(parts) == 3 and parts[0] in by_split
                    and _is_image(p)):
                by_split[parts[0]].append((p, parts[1]))
        test_folder = next(f for f in TEST_FOLDERS if by_split[f])
        by_split["test"] = by_split[test_folder]
        class_names = sorted({c for _, c in by_split["train"]})
        label_of = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({c for _, c in by_split["test"]} - set(label_of))
        if unknown:
            raise ValueError(
                f"{test_folder} classes {unknown} have no folder under "
                f"{root or './'}train/"
            )
        train = [(p, label_of[c]) for p, c in by_split["train"]]
        test = [(p, label_of[c]) for p, c in by_split["test"]]
    return class_names, _as_split(train), _as_split(test)


def _as_split(pairs):
    pairs = sorted(pairs)
    return [p for p, _ in pairs], np.array([l for _, l in pairs], np.int32)


def resolve_classes(class_names, classes):
    """Indices of the classes to keep, in dataset order.

    Args:
        class_names: all class names of the dataset, in label order.
        classes: `None` (all), an int `K` (the first `K` classes) or a
            sequence of class names.

    Returns:
        Sorted int array of kept label indices.
    """
    if classes is None:
        return np.arange(len(class_names))
    if isinstance(classes, (int, np.integer)):
        if not 1 <= classes <= len(class_names):
            raise ValueError(
                f"classes={classes} must be between 1 and {len(class_names)}"
            )
        return np.arange(int(classes))
    if isinstance(classes, str):
        raise TypeError("classes must be an int or a sequence of class names")
    missing = sorted(set(classes) - set(class_names))
    if missing:
        raise ValueError(f"unknown classes {missing}")
    keep = set(classes)
    return np.array(
        [i for i, name in enumerate(class_names) if name in keep], np.int64
    )


def classes_key(classes):
    """JSON-serialisable form of a `classes` argument (for cache keys)."""
    if classes is None or isinstance(classes, (int, np.integer)):
        return None if classes is None else int(classes)
    return list(classes)
