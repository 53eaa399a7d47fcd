"""Image data sets read with numpy from files already on disk; nothing is downloaded.

A data set is named by a spec string:

- ``fmnist:train`` / ``fmnist:test`` — Fashion-MNIST IDX gz files, from ``$SNN_FMNIST_DIR`` or the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
  ``fmnist:PATH:test`` reads another copy.
- ``cifar10:PATH:train|test`` / ``cifar100:PATH:train|test`` — the published python-pickle
  directories (``cifar-10-batches-py``, ``cifar-100-python``).
- ``folder:PATH`` / ``folder:PATH:train|test|val`` — an ImageFolder tree (``PATH/train`` +
  ``PATH/test``, or one tree split by a seeded held-out fraction); layouts and the grayscale/RGB
  and resize rules are in `codec.image_folder`.

A spec that names no split is the **test** split, for every kind (a folder tree without
``train/`` and ``test/`` and no held-out fraction is read whole): commands that evaluate, export
or feed a device score held-out images unless told otherwise, and the training commands ask for
``:train`` themselves (`codec.training.common.data_specs`); every ``--data`` help
says so.

Images come back as uint8 arrays of shape (N, H, W, C); labels as int64 (N,).
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from codec.dataset import DATASETS, Dataset
from codec.image_folder import read_folder_spec
from snn.errors import DataError

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
FMNIST_HINT = ("install it with 'apt-get install -y dataset-fashion-mnist', or point SNN_FMNIST_DIR "
               "(or the spec fmnist:PATH:test) at a folder holding the four IDX .gz files")


def load_dataset(spec: str, holdout: float | None = None, split_seed: int = 0,
                 shape: tuple[int, int, int] | None = None) -> Dataset:
    """Load a data set from its spec string (see the module docstring).

    `holdout`/`split_seed` (the held-out split of a single folder tree) and `shape` ((C, H, W) a
    trained model expects) apply to folder specs only."""
    kind, _, rest = spec.partition(":")
    if kind not in DATASETS:
        raise DataError(f"unknown data set spec '{spec}': use {DATASETS.choices()}")
    return DATASETS.get(kind)(kind.lower(), rest, holdout=holdout, split_seed=split_seed, shape=shape)


@DATASETS.register("fmnist", example="fmnist[:PATH]:train|test", summary="Fashion-MNIST (IDX gz)")
def _read_fmnist(kind: str, rest: str, **_options) -> Dataset:
    path, split = _path_and_split(rest, default_path=None)
    return load_fmnist(split, path)


def _read_cifar(kind: str, rest: str, **_options) -> Dataset:
    path, split = _path_and_split(rest, default_path=None)
    if path is None:
        raise DataError(f"{kind} needs a path: use {kind}:PATH:test with PATH the extracted "
                        f"python-pickle directory")
    return load_cifar(path, split, fine=(kind == "cifar100"))


DATASETS.add("cifar10", _read_cifar, example="cifar10:PATH:train|test", summary="CIFAR-10 (python pickles)")
DATASETS.add("cifar100", _read_cifar, example="cifar100:PATH:train|test", summary="CIFAR-100 (python pickles)")
DATASETS.add("folder", read_folder_spec, example="folder:PATH[:train|test|val]", summary="an ImageFolder tree")


def split_options(record: dict | None) -> dict:
    """The held-out split a backbone record / bundle config recorded, as load_dataset kwargs."""
    record = record or {}
    if record.get("holdout") is None:
        return {}
    return {"holdout": float(record["holdout"]), "split_seed": int(record.get("split_seed") or 0)}


def _path_and_split(rest: str, default_path: Path | None) -> tuple[Path | None, str]:
    if not rest:
        return default_path, "test"
    head, _, tail = rest.rpartition(":")
    if tail in ("train", "test"):
        return (Path(head) if head else default_path), tail
    return Path(rest), "test"


# --- Fashion-MNIST (IDX) -------------------------------------------------------------------

def fmnist_dir(path: Path | None = None) -> Path:
    """The folder holding Fashion-MNIST: the argument, $SNN_FMNIST_DIR, or the Debian path."""
    if path is not None:
        return Path(path)
    env = os.environ.get("SNN_FMNIST_DIR")
    return Path(env) if env else FMNIST_DIR


def load_fmnist(split: str = "test", path: Path | None = None) -> Dataset:
    """Fashion-MNIST from its IDX gz files, header and sizes validated."""
    if split not in FMNIST_FILES:
        raise DataError(f"Fashion-MNIST has splits 'train' and 'test', not '{split}'")
    folder = fmnist_dir(path)
    image_file, label_file, expected = FMNIST_FILES[split]
    for name in (image_file, label_file):
        if not (folder / name).is_file():
            raise DataError(f"Fashion-MNIST file {folder / name} is missing: {FMNIST_HINT}")
    images = read_idx(folder / image_file)
    labels = read_idx(folder / label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST in {folder} is inconsistent: images {images.shape}, labels "
                        f"{labels.shape}; {FMNIST_HINT}")
    if path is None and len(images) != expected:
        raise DataError(f"Fashion-MNIST {split} in {folder} has {len(images)} images, expected "
                        f"{expected}; {FMNIST_HINT}")
    if labels.size and labels.max() >= len(FMNIST_CLASSES):
        raise DataError(f"Fashion-MNIST labels in {folder / label_file} exceed 9; the file is corrupt")
    return Dataset(f"fmnist:{split}", images[..., None], labels.astype(np.int64), list(FMNIST_CLASSES))


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), validating magic, dimensions and size."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}; the file is truncated or not gzip") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != need:
        raise DataError(f"{path} holds {len(raw) - header} data bytes, its header promises {need}: "
                        f"the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (used for fixtures and tools)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


# --- CIFAR (python pickles) ------------------------------------------------------------------

def load_cifar(path: Path, split: str = "test", fine: bool = False) -> Dataset:
    """CIFAR-10 (`cifar-10-batches-py`) or CIFAR-100 (`cifar-100-python`) pickle directories."""
    path = Path(path)
    name = "cifar100" if fine else "cifar10"
    hint = (f"extract the python version of {name.upper()} (e.g. cifar-10-python.tar.gz) and pass "
            f"its directory")
    if not path.is_dir():
        raise DataError(f"{name} directory {path} does not exist: {hint}")
    if fine:
        files = ["train"] if split == "train" else ["test"]
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    else:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    images, labels = [], []
    for file in files:
        batch = _unpickle(path / file, hint)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[labels_key.encode()], dtype=np.int64))
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path / file} is not a {name} batch ({exc})") from None
    meta = _unpickle(path / meta_file, hint)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(names_key.encode(), [])]
    return Dataset(f"{name}:{split}", np.concatenate(images), np.concatenate(labels), classes)


# What a CIFAR batch holds besides dicts, lists, bytes and numbers: numpy arrays. Every other global
# a pickle names (os.system, builtins.eval, ...) is refused before it is looked up.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell a bytes object
}


class _CifarUnpickler(pickle.Unpickler):
    """An Unpickler that builds only what a CIFAR batch holds (see _CIFAR_GLOBALS)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise DataError(f"refused: the pickle asks for {module}.{name}, which no CIFAR batch holds")
        return super().find_class(module, name)


def _unpickle(file: Path, hint: str) -> dict:
    if not file.is_file():
        raise DataError(f"{file} is missing: {hint}")
    try:
        with open(file, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except DataError as exc:
        raise DataError(f"{file} is not a CIFAR batch: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{file} is corrupt or truncated ({type(exc).__name__}): {hint}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{file} is not a CIFAR batch (a {type(batch).__name__}, not a dict): {hint}")
    return batch
