import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_bundle():
    from fixture_bundle import TinyBundle

    return TinyBundle()


@pytest.fixture(scope="session")
def fmnist():
    from codec.datasets import load_dataset

    try:
        return load_dataset("fmnist:train"), load_dataset("fmnist:test")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available: {exc}")


@pytest.fixture(scope="session")
def tiny_export(tiny_bundle, fmnist, tmp_path_factory):
    from export.pipeline import export_bundle

    train, test = fmnist
    out = tmp_path_factory.mktemp("tiny_export")
    report = export_bundle(tiny_bundle, out, train.images, test.images[:200], test.labels[:200], calib=128,
                           holdout=128, latency_runs=20, log=lambda *a: None)
    return out, report
