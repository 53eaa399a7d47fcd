import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def fixture_encoder(tmp_path_factory):
    """A small QDQ int8 encoder (conv/BN/ReLU, residual add, GDN, PReLU, power norm, ArgMin)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    from fixture_model import build_fixture
    return build_fixture(tmp_path_factory.mktemp("mcu") / "fixture.int8.onnx")


@pytest.fixture(scope="session")
def fixture_images():
    return np.random.default_rng(3).integers(0, 256, size=(48, 16, 16, 1), dtype=np.uint8)
