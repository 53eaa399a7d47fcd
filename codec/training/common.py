"""Shared pieces of the training loops: seeding, augmentation, batching, checkpoints, logging.

Augmentation runs on whole batches as tensor ops (random translation by zero-padded crop and a
horizontal flip), because per-image Python loops would dominate a 2-core CPU budget.
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from codec.datasets import Dataset, load_dataset


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


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,C) -> float32 (N,C,H,W) in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of [0,1] pixels (on at most 10k images)."""
    x = images[:10000].astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2)) + 1e-6
    return [float(v) for v in mean], [float(v) for v in std]


def augment(x: torch.Tensor, g: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random translation by up to `pad` px (zero fill) and a random horizontal flip, per image."""
    n, c, h, w = x.shape
    if pad:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        rows = (torch.arange(h)[None, :] + dy[:, None])[:, :, None]
        cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, :]
        x = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, generator=g) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.contiguous()


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
def predict(fn, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Apply `fn` to `x` in chunks and concatenate (eval helper)."""
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
