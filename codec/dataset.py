"""One data set in memory, the type every reader returns, and the readers' registry.

It sits a floor below the readers (`codec.datasets`: Fashion-MNIST, CIFAR; `codec.image_folder`)
so that each of them can build a `Dataset` and register itself without importing the others;
`codec.datasets.load_dataset` picks the reader by the spec's first word (``fmnist:test`` ->
"fmnist").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from snn.errors import DataError
from snn.registry import Registry


@dataclass(frozen=True)
class Dataset:
    """Images (N, H, W, C) uint8, labels (N,) int64 and the class names."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, count: int | None) -> "Dataset":
        """The first `count` samples (all when count is None)."""
        if count is None or count >= len(self):
            return self
        return Dataset(self.name, self.images[:count], self.labels[:count], self.classes)


# spec kind -> reader(kind, rest of the spec, holdout, split_seed, shape) -> Dataset; filled as
# `codec.datasets` (the readers and `load_dataset`) is imported
DATASETS: Registry[Callable[..., Dataset]] = Registry("data set spec", error=DataError)
