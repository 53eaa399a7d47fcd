"""The shipped default bundle loads and meets its accuracy bars on the real Fashion-MNIST test set."""
import pytest

from channel.bit_errors import make_error_model
from codec.bundle import DEFAULT_BUNDLE, load_bundle
from codec.datasets import FMNIST_DIR, fmnist_dir, load_dataset
from codec.evaluate import corrupt_symbols, device_symbols, edge_predict

needs_fmnist = pytest.mark.skipif(not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason=f"Fashion-MNIST is not installed under {FMNIST_DIR}")


def test_shipped_bundle_loads_and_is_small():
    b = load_bundle()
    assert DEFAULT_BUNDLE.stat().st_size < 600_000
    assert b.payload_bytes <= 48 and len(b.fingerprint) == 4
    assert b.manifest["command"].startswith("snn train codec") and "seed" in b.manifest
    assert b.metrics["results"], "the shipped bundle carries its measured figures"


@needs_fmnist
def test_shipped_bundle_accuracy_on_full_test_set():
    b = load_bundle()
    test = load_dataset("fmnist:test")
    symbols = device_symbols(b, test.images)
    acc0 = float((edge_predict(b, symbols, 0.0) == test.labels).mean())
    rx = corrupt_symbols(b, symbols, make_error_model("iid", ber=1e-2), seed=17)
    acc2 = float((edge_predict(b, rx, 1e-2) == test.labels).mean())
    assert acc0 >= 0.91, acc0
    assert acc2 >= 0.90, acc2
