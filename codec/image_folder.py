"""ImageFolder trees: one sub-folder per class holding PNG/JPEG files, read with Pillow.

Layouts (the spec is ``folder:PATH`` or ``folder:PATH:train|test|val``):

- ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (or ``PATH/val``): the given splits;
  the class list is the train split's, and a test class the train split lacks is an error.
  A spec that names no split means the test split (``val`` where there is no ``test``): every
  command that evaluates or feeds a device scores held-out images unless told otherwise; the
  training commands ask for ``:train`` themselves.
- ``PATH/<class>/*``: one tree. ``:train`` / ``:test`` need a held-out fraction (``--holdout F
  --split-seed S`` on the train commands, recorded in the bundle), which takes the same seeded,
  per-class share of every class out of the tree for the test split; with that fraction given, a
  spec that names no split is the held-out share too, without it the whole tree.

Conversion rules, the same for every split so training and evaluation see the same pixels:
channels are 1 when every image of the train split is grayscale (Pillow modes 1, L, LA, I, I;16, F),
else 3 (grayscale, palette and alpha images converted to RGB; alpha is dropped). Every image is
resized (bilinear, aspect ratio not kept) to the most common size of the train split, or to the
shape a trained backbone/bundle records. A file Pillow cannot read, one larger than
`MAX_IMAGE_BYTES`, one that is not PNG or JPEG inside, or one whose header promises more than
`MAX_IMAGE_PIXELS` (a decompression bomb: checked before any pixel is decoded) is a DataError
naming it. `decode_image` applies the same rules to one image from a file or from bytes (the
device's live sources use it).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from codec.dataset import Dataset
from snn.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
IMAGE_FORMATS = ("PNG", "JPEG")    # the only decoders Pillow may pick (never one named by a file's bytes alone)
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
SPLIT_NAMES = ("train", "test", "val")
MAX_IMAGE_BYTES = 32 * 2**20       # one image file (a 24 Mpx JPEG is ~10 MB)
MAX_IMAGE_PIXELS = 40_000_000      # width x height an image's header may promise (8K x 5K); 120 MB as RGB


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading image folders needs Pillow: pip install pillow") from None
    return Image


def _class_files(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    return {c: sorted(f for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes}


def _open(source: Path | bytes, name: str, max_bytes: int, max_pixels: int):
    """A Pillow image of `source` (a path or the file's bytes), its header checked against the
    bounds; nothing is decoded yet."""
    import io

    image = _pil()
    size = len(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).stat().st_size
    if size > max_bytes:
        raise DataError(f"image {name} is {size} bytes, over the {max_bytes}-byte limit")
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        img = image.open(fp, formats=IMAGE_FORMATS)
    except (OSError, image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {name}: not a PNG or JPEG image ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise DataError(f"image {name} is {width}x{height} pixels, over the {max_pixels:,}-pixel limit "
                        f"(a decompression bomb, or an image to scale down first)")
    return img


def _convert(img, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A Pillow image by the conversion rules above: `channels` 1 (L) or 3 (RGB), resized
    bilinearly to `size` = (width, height); uint8 (H, W, C)."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != size:
        img = img.resize(size, _pil().BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(size[1], size[0], channels)


def decode_image(source: Path | bytes, channels: int, size: tuple[int, int], *, name: str | None = None,
                 max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """One PNG/JPEG (a path or its bytes) as uint8 (H, W, C) by the conversion rules above."""
    image = _pil()
    name = name or (str(source) if isinstance(source, (str, Path)) else "from bytes")
    try:
        with _open(source, name, max_bytes, max_pixels) as img:
            return _convert(img, channels, size)
    except (OSError, image.DecompressionBombError, ValueError) as exc:
        raise DataError(f"cannot read image {name}: {exc}") from None


def convert_array(pixels: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 pixels (H, W) or (H, W, 1|3|4: gray, RGB, RGBA) by the conversion rules above (a
    camera frame, an array a caller hands the device)."""
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    return _convert(_pil().fromarray(arr), channels, size)


def _probe(files: list[Path]) -> tuple[int, tuple[int, int]]:
    """(channels, (width, height)) by the rules above, from the image headers only."""
    modes, sizes = set(), Counter()
    for file in files:
        try:
            with _open(file, str(file), MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS) as img:
                modes.add(img.mode)
                sizes[img.size] += 1
        except OSError as exc:
            raise DataError(f"cannot read image {file}: {exc}") from None
    channels = 1 if modes <= GRAY_MODES else 3
    return channels, sizes.most_common(1)[0][0]


def _read(files: list[Path], channels: int, size: tuple[int, int]) -> np.ndarray:
    out = np.empty((len(files), size[1], size[0], channels), np.uint8)
    for i, file in enumerate(files):
        try:
            out[i] = decode_image(file, channels, size)
        except OSError as exc:   # the file vanished or became unreadable since it was listed
            raise DataError(f"cannot read image {file}: {exc}") from None
    return out


def _flatten(files: dict[str, list[Path]], classes: list[str]) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for label, cls in enumerate(classes):
        paths += files.get(cls, [])
        labels += [label] * len(files.get(cls, []))
    return paths, np.asarray(labels, dtype=np.int64)


def holdout_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded per-class held-out share (at least one image of a class with two or more)."""
    rng = np.random.default_rng(seed)
    held = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        held.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)


def split_dir(root: Path, split: str) -> Path | None:
    """PATH/train, PATH/test (PATH/val when there is no test) or None when the tree is not split."""
    if split == "train":
        return root / "train" if (root / "train").is_dir() else None
    for name in ((split,) if split == "val" else ("test", "val")):
        if (root / name).is_dir():
            return root / name
    return None


def load_image_folder(root: Path, split: str | None = None, holdout: float | None = None, split_seed: int = 0,
                      shape: tuple[int, int, int] | None = None):
    """The images of one split (or the whole tree) as a `codec.dataset.Dataset`.

    `shape` is (C, H, W) of a trained model; without it the rules of the module docstring pick it
    from the train split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    if split is not None and split not in SPLIT_NAMES:
        raise DataError(f"image folder split must be train, test or val, not '{split}'")
    if holdout is not None and not 0.0 < holdout < 1.0:
        raise DataError(f"--holdout must lie strictly between 0 and 1, got {holdout}")
    has_splits = (root / "train").is_dir()
    if split is None and (has_splits or holdout is not None):
        split = "test"   # a spec that names no split is the held-out one (module docstring)
    train_root = root / "train" if has_splits else root
    train_files = _class_files(train_root)
    classes = list(train_files)
    if not classes or not any(train_files.values()):
        raise DataError(f"image folder {train_root} holds no PNG/JPEG images in class sub-folders "
                        f"(expected {train_root}/<class>/<image>.png)")
    if has_splits:
        if split == "train":
            files, labels = _flatten(train_files, classes)
        else:
            test_root = split_dir(root, split)
            if test_root is None:
                raise DataError(f"image folder {root} has train/ but no test/ or val/ sub-folder")
            test_files = _class_files(test_root)
            unknown = sorted(set(test_files) - set(classes))
            if unknown:
                raise DataError(f"{test_root} has classes {unknown[:5]} that {train_root} lacks")
            files, labels = _flatten(test_files, classes)
            split = test_root.name    # the name says which split was read (val where there is no test)
    else:
        files, labels = _flatten(train_files, classes)
        if split is not None:
            if holdout is None:
                raise DataError(f"image folder {root} has no train/ and test/ sub-folders: hold a share of it out "
                                f"with --holdout F (e.g. --holdout 0.2 --split-seed 0), or make PATH/train and "
                                f"PATH/test")
            held = np.zeros(len(files), bool)
            held[holdout_indices(labels, holdout, split_seed)] = True
            keep = held if split != "train" else ~held
            files, labels = [f for f, k in zip(files, keep) if k], labels[keep]
    if not files:
        raise DataError(f"image folder {root} split {split} holds no images")
    if shape is not None:
        channels, size = int(shape[0]), (int(shape[2]), int(shape[1]))
    else:
        channels, size = _probe(_flatten(train_files, classes)[0])
    name = f"folder:{root}" + (f":{split}" if split else "")
    return Dataset(name, _read(files, channels, size), labels, classes)


def read_folder_spec(kind: str, rest: str, holdout: float | None = None, split_seed: int = 0,
                     shape: tuple[int, int, int] | None = None) -> Dataset:
    """The reader of ``folder:PATH[:train|test|val]`` specs (`codec.dataset.DATASETS`)."""
    if not rest:
        raise DataError("folder needs a path: use folder:PATH with one sub-folder per class")
    head, _, tail = rest.rpartition(":")
    path, split = (head, tail) if head and tail in SPLIT_NAMES else (rest, None)
    return load_image_folder(Path(path), split, holdout=holdout, split_seed=split_seed, shape=shape)
