"""One data set in memory: the type every reader returns (`codec.datasets`, `codec.image_folder`).

It sits a floor below the readers so that each of them can build one without importing the
others (`codec.datasets.load_dataset` picks the reader by the spec's name).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
