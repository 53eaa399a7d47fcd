"""Skip-or-fail for tests that need an external tool: with CI=1 a missing tool fails the test.

The firmware tests run the real gcc, arm-none-eabi-gcc and qemu-system-arm; a developer without
them gets a skip that names the apt package, CI gets a failure (scripts/setup.sh installs them).
"""
from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {"gcc": "gcc", "arm-none-eabi-gcc": "gcc-arm-none-eabi", "qemu-system-arm": "qemu-system-arm"}


def need(tool: str) -> str:
    """Path of `tool`; skip the test (fail it under CI=1) when it is not installed."""
    path = shutil.which(tool)
    if path:
        return path
    msg = f"{tool} not installed (apt-get install {PACKAGES.get(tool, tool)}; scripts/setup.sh does it as root)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
