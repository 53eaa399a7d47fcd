"""`snn train backbone` and `snn train codec` end to end on a few hundred real images (seconds).

The full-size training of the shipped bundle is behind @pytest.mark.slow.
"""
import json
import zipfile

import pytest

from codec.bundle import load_bundle
from codec.data import FMNIST_DIR, fmnist_dir
from snn.cli import main

needs_fmnist = pytest.mark.skipif(not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason=f"Fashion-MNIST is not installed under {FMNIST_DIR}")


@needs_fmnist
def test_train_backbone_then_codec_with_xai_and_resume(tmp_path):
    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "300",
                 "--seed", "1", "-o", str(bb)]) == 0
    out = tmp_path / "c.snn"
    args = ["train", "codec", "--backbone", str(bb), "-o", str(out), "--count", "300", "--stage1-epochs", "1",
            "--stage2-epochs", "1", "--xai", "--xai-every", "1", "--seed", "3", "--dec-hidden", "16",
            "--enc-hidden", "16"]
    assert main(args) == 0
    b = load_bundle(out)
    assert b.payload_bytes == 37 and b.manifest["seed"] == 3
    assert "--xai" in b.manifest["command"]
    assert {r["ber"] for r in b.metrics["results"]} == {0.0, 1e-3, 1e-2, 5e-2, 1e-1}
    assert (tmp_path / "c.snn.ckpt").is_file()
    # resuming a finished run re-uses the checkpoint and gives the same codec (determinism)
    assert main(args + ["--resume"]) == 0
    assert load_bundle(out).fingerprint == b.fingerprint


@needs_fmnist
def test_codec_training_is_deterministic_for_a_seed(tmp_path):
    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "200",
                 "-o", str(bb)]) == 0
    prints = []
    for name in ("a.snn", "b.snn"):
        assert main(["train", "codec", "--backbone", str(bb), "-o", str(tmp_path / name), "--count", "200",
                     "--stage1-epochs", "1", "--stage2-epochs", "1", "--seed", "5", "--dec-hidden", "16",
                     "--enc-hidden", "16"]) == 0
        prints.append(load_bundle(tmp_path / name).fingerprint)
    assert prints[0] == prints[1]


def test_missing_backbone_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "codec", "--backbone", str(tmp_path / "none.pt"), "-o", str(tmp_path / "x.snn")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
@needs_fmnist
def test_full_training_of_the_shipped_recipe(tmp_path):
    """The shipped bundle's recipe (codec/zoo/TRAINING.md), end to end: ~30-45 min on 2 cores."""
    bb = tmp_path / "backbone.pt"
    assert main(["train", "backbone", "--data", "fmnist", "--arch", "resnet14", "--epochs", "12", "-o", str(bb)]) == 0
    out = tmp_path / "fmnist.snn"
    assert main(["train", "codec", "--backbone", str(bb), "-o", str(out), "--xai", "--seed", "0"]) == 0
    metrics = {r["ber"]: r["accuracy"] for r in load_bundle(out).metrics["results"]}
    assert metrics[0.0] >= 0.91 and metrics[0.01] >= 0.90 and metrics[0.05] >= 0.88 and metrics[0.1] >= 0.84
