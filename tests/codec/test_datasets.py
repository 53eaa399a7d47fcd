import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.datasets import FMNIST_DIR, load_dataset, load_fmnist, write_idx
from snn.errors import DataError


def _fake_fmnist(folder: Path, n: int = 12) -> None:
    rng = np.random.default_rng(0)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_idx_fixture(tmp_path):
    _fake_fmnist(tmp_path)
    ds = load_dataset(f"fmnist:{tmp_path}:test")
    assert ds.images.shape == (12, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [i % 10 for i in range(12)]
    assert ds.classes[0] == "T-shirt/top" and len(ds.take(5)) == 5


def test_idx_env_override(tmp_path, monkeypatch):
    _fake_fmnist(tmp_path)
    monkeypatch.setenv("SNN_FMNIST_DIR", str(tmp_path))
    assert len(load_fmnist("test", tmp_path)) == 12


def test_truncated_idx_is_a_clear_error(tmp_path):
    _fake_fmnist(tmp_path)
    import gzip
    raw = gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(f"fmnist:{tmp_path}:test")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="truncated or not gzip"):
        load_dataset(f"fmnist:{tmp_path}:test")


def test_missing_fmnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset(f"fmnist:{tmp_path}:test")


def test_missing_data_cli_exit_2_without_traceback(tmp_path):
    env = {"SNN_FMNIST_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    code = ("import sys; from snn.cli import main; from codec.datasets import load_dataset\n"
            "from snn.errors import SnnError\n"
            "try:\n    load_dataset('fmnist:test')\nexcept SnnError as e:\n"
            "    print(e, file=sys.stderr); sys.exit(2)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cifar10_pickle_fixture(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 3]}, f)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat"]}, f)
    ds = load_dataset(f"cifar10:{tmp_path}:test")
    assert ds.images.shape == (4, 32, 32, 3)
    # channel-planar rows become HWC: red plane first
    assert ds.images[0, 0, 0, 0] == data[0, 0] and ds.images[0, 0, 0, 1] == data[0, 1024]
    assert ds.classes[3] == "cat" and ds.labels.tolist() == [0, 1, 2, 3]


def test_cifar100_pickle_fixture(tmp_path):
    data = np.zeros((2, 3072), dtype=np.uint8)
    with open(tmp_path / "test", "wb") as f:
        pickle.dump({b"data": data, b"fine_labels": [5, 99], b"coarse_labels": [0, 1]}, f)
    with open(tmp_path / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)
    ds = load_dataset(f"cifar100:{tmp_path}:test")
    assert ds.labels.tolist() == [5, 99] and len(ds.classes) == 100


def test_corrupt_cifar_is_a_clear_error(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="corrupt"):
        load_dataset(f"cifar10:{tmp_path}:test")


def test_image_folder_fixture(tmp_path):
    from PIL import Image
    for cls, colour in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), colour + i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(tmp_path / "dog" / "big.jpg")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.classes == ["cat", "dog"] and ds.images.shape == (7, 8, 8, 3)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_unknown_spec():
    with pytest.raises(DataError, match="unknown data set spec"):
        load_dataset("mnist:test")


@pytest.mark.skipif(not (FMNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="real Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)")
def test_real_fashion_mnist():
    test = load_dataset("fmnist:test")
    assert test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert 70 < test.images.mean() < 80  # the published mean pixel is about 72.9


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_cifar_pickle_is_refused(tmp_path, monkeypatch):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Boom(), b"labels": [0]}, f, protocol=2)
    calls = []
    monkeypatch.setattr("os.system", lambda *a: calls.append(a))
    with pytest.raises(DataError, match="refused.*system"):
        load_dataset(f"cifar10:{tmp_path}:test")
    assert calls == []


def test_cifar_pickle_written_with_protocol_2(tmp_path):
    """The published batches are protocol-2 pickles; Python 3 writes bytes there via _codecs.encode."""
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [1, 0], b"batch_label": b"testing batch 1 of 1"}, f, protocol=2)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a", b"b"]}, f, protocol=2)
    ds = load_dataset(f"cifar10:{tmp_path}:test")
    assert ds.images.shape == (2, 32, 32, 3) and ds.classes == ["a", "b"] and ds.labels.tolist() == [1, 0]


def _tiny_tree(root, parts):
    from PIL import Image
    for part, shade in parts:
        for cls in ("a", "b"):
            (root / part / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8), shade + i, np.uint8)).save(root / part / cls / f"{i}.png")


@pytest.mark.parametrize("parts, read", [((("train", 10), ("test", 100)), "test"),
                                         ((("train", 10), ("val", 150)), "val")])
def test_a_split_tree_without_a_suffix_reads_its_test_split(tmp_path, parts, read):
    _tiny_tree(tmp_path, parts)
    ds = load_dataset(f"folder:{tmp_path}")
    shade = dict(parts)[read]
    assert ds.name == f"folder:{tmp_path}:{read}" and int(ds.images.min()) == shade
    assert int(load_dataset(f"folder:{tmp_path}:train").images.max()) <= 11


def test_a_single_tree_with_a_holdout_and_no_suffix_reads_the_held_out_share(tmp_path):
    _tiny_tree(tmp_path, [("", 10)])
    held = load_dataset(f"folder:{tmp_path}", holdout=0.5, split_seed=0)
    assert held.name.endswith(":test") and len(held) == 2
    assert np.array_equal(held.images, load_dataset(f"folder:{tmp_path}:test", holdout=0.5).images)
    assert len(load_dataset(f"folder:{tmp_path}")) == 4     # no held-out fraction: the whole tree


def test_image_bounds_refuse_bombs_oversized_files_and_other_formats(tmp_path):
    from PIL import Image

    from codec.image_folder import decode_image

    Image.new("L", (4000, 3000)).save(tmp_path / "big.png")            # 12 Mpx, a few KB on disk
    with pytest.raises(DataError, match="pixel limit"):
        decode_image(tmp_path / "big.png", 1, (8, 8), max_pixels=10_000_000)
    with pytest.raises(DataError, match="byte limit"):
        decode_image((tmp_path / "big.png").read_bytes(), 1, (8, 8), max_bytes=1000)
    Image.new("L", (8, 8)).save(tmp_path / "x.gif")
    with pytest.raises(DataError, match="not a PNG or JPEG"):
        decode_image(tmp_path / "x.gif", 1, (8, 8))
    raw = (tmp_path / "big.png").read_bytes()
    with pytest.raises(DataError, match="cannot read image"):
        decode_image(raw[: len(raw) // 2], 1, (8, 8))                  # truncated
    assert decode_image(raw, 3, (6, 4)).shape == (4, 6, 3)
