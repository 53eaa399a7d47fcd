"""Shared pieces of the training loops: seeding, augmentation, batching, checkpoints, logging.

Augmentation runs on whole batches as tensor ops (random translation by zero-padded crop and a
horizontal flip), because per-image Python loops would dominate a 2-core CPU budget.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from codec.datasets import Dataset, load_dataset
from snn.errors import SnnError


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a torch generator for data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def data_specs(data: str) -> tuple[str, str]:
    """`fmnist` -> ('fmnist:train', 'fmnist:test'); a full spec 'kind:PATH' gets :train/:test added."""
    if data in ("fmnist", "fashion-mnist"):
        return "fmnist:train", "fmnist:test"
    if data.endswith((":train", ":test", ":val")):
        base = data.rsplit(":", 1)[0]
        return base + ":train", base + ":test"
    return data + ":train", data + ":test"


def load_split(data: str, holdout: float | None = None, split_seed: int = 0,
               shape: tuple[int, int, int] | None = None) -> tuple[Dataset, Dataset]:
    """(train, test) of a data set; holdout/split_seed/shape as in `codec.datasets.load_dataset`."""
    train_spec, test_spec = data_specs(data)
    opts = {"holdout": holdout, "split_seed": split_seed, "shape": shape}
    train = load_dataset(train_spec, **opts)
    if shape is None and train.name.startswith("folder:"):  # the test split gets the train split's shape
        opts["shape"] = (train.images.shape[3], train.images.shape[1], train.images.shape[2])
    return train, load_dataset(test_spec, **opts)


VAL_FRACTION, VAL_MAX = 0.1, 5000  # the validation split: 10 % of train, at most 5,000 images


def pick_device(name: str | None = "auto") -> torch.device:
    """auto: CUDA when present, else the CPU; or the device named."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnnError(f"--device {name}: no CUDA device is available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SnnError(f"unknown --device '{name}': use auto, cpu or cuda") from None


def split_validation(train: Dataset, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train minus validation, validation): a seeded per-class share of the training set, never the
    test set, for model selection. The same seed gives the backbone and the codec the same split."""
    from codec.image_folder import holdout_indices

    n = len(train)
    fraction = min(VAL_FRACTION, VAL_MAX / max(n, 1))
    held = np.zeros(n, bool)
    if n >= 20:
        held[holdout_indices(train.labels, fraction, seed)] = True
    part = lambda m, tag: Dataset(f"{train.name}[{tag}]", train.images[m], train.labels[m], train.classes)  # noqa: E731
    return part(~held, "fit"), part(held, "val")


def epochs_for(min_steps: int, steps_per_epoch: int, floor: int = 1) -> int:
    """Epochs so that a schedule runs at least `min_steps` optimisation steps (small data sets get
    more epochs, large ones at least `floor`)."""
    return max(floor, math.ceil(min_steps / max(1, steps_per_epoch)))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,C) -> float32 (N,C,H,W) in [0,1], with plain NCHW strides.

    A permuted view of a 1-channel array has strides (H*W, 1, W, 1): torch calls it contiguous, but
    oneDNN's convolution backward took it for channels-last and corrupted the heap (seen as
    'free(): invalid next size' on a 51-image batch), so the transpose happens in numpy and the cast asks for the plain layout."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return x.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of [0,1] pixels (on at most 10k images)."""
    x = images[:10000].astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2)) + 1e-6
    return [float(v) for v in mean], [float(v) for v in std]


def augment(x: torch.Tensor, g: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random translation by up to `pad` px (zero fill) and a random horizontal flip, per image."""
    n, c, h, w = x.shape
    dev = x.device  # random draws on the CPU generator (the same on any device), indices moved
    if pad:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        rows = (torch.arange(h)[None, :] + dy[:, None])[:, :, None].to(dev)
        cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, :].to(dev)
        x = padded[torch.arange(n, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(n, generator=g) < 0.5).to(dev)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.clone(memory_format=torch.contiguous_format)  # plain NCHW strides (see to_tensor)


def batches(n: int, batch_size: int, g: torch.Generator | None, shuffle: bool = True):
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def progress(iterable, total: int, desc: str):
    """A tqdm bar on a terminal (to stderr); silent in logs and tests."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a core dependency, but never fail a run for a progress bar
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None, file=sys.stderr)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file and rename, so an interrupted run never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state(g: torch.Generator) -> dict:
    """Every RNG state as tensors, lists, ints and strings, so checkpoints load with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "gen": g.get_state(),
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}


def set_rng_state(g: torch.Generator, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    g.set_state(state["gen"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


@torch.no_grad()
def accuracy(fn, images: np.ndarray, labels: np.ndarray, device: torch.device | None = None,
             batch_size: int = 1000) -> float:
    """Top-1 of `fn` (images in [0,1] -> logits) on uint8 NHWC images."""
    if len(labels) == 0:
        return float("nan")
    logits = predict(fn, to_tensor(images), batch_size, device)
    return float((logits.argmax(1).cpu().numpy() == labels).mean())


@torch.no_grad()
def predict(fn, x: torch.Tensor, batch_size: int = 1000, device: torch.device | None = None) -> torch.Tensor:
    """Apply `fn` to `x` in chunks and concatenate (eval helper); chunks go to `device` when given."""
    if device is None:
        return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return torch.cat([fn(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
