"""Process settings that must be made before torch is imported.

OMP_WAIT_POLICY=PASSIVE: by default OpenMP worker threads spin while waiting for work. On a small
machine shared with other processes (2 cores, several jobs) a spinning thread burns the core its
partner needs, and we measured the edge half drop from ~10,000 to 150-2,000 images/s and a
training epoch take 3-5x longer. Passive waiting costs little when the machine is idle. This only
takes effect if torch (and its OpenMP runtime) has not been loaded yet; a user's own setting wins.
"""
from __future__ import annotations

import os
import sys


def passive_omp_threads() -> None:
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
