"""`snn train backbone` and `snn train codec` end to end on a few hundred real images (seconds).

The full-size training of the shipped bundle is behind @pytest.mark.slow.
"""
import pytest
import torch

from codec.bundle import load_bundle
from codec.datasets import FMNIST_DIR, fmnist_dir
from snn.cli import main

needs_fmnist = pytest.mark.skipif(not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason=f"Fashion-MNIST is not installed under {FMNIST_DIR}")


@needs_fmnist
def test_train_backbone_then_codec_deterministic_and_resumable(tmp_path):
    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "200",
                 "--seed", "1", "-o", str(bb)]) == 0
    common = ["train", "codec", "--backbone", str(bb), "--count", "200", "--stage1-epochs", "1", "--xai",
              "--xai-every", "1", "--seed", "3", "--dec-hidden", "16", "--enc-hidden", "16"]
    a = tmp_path / "a.snn"
    assert main(common + ["-o", str(a), "--stage2-epochs", "1"]) == 0
    ba = load_bundle(a)
    assert ba.payload_bytes == 37 and ba.manifest["seed"] == 3
    assert ba.manifest["command"].startswith("snn train codec") and "--xai" in ba.manifest["command"]
    assert {r["ber"] for r in ba.metrics["results"]} == {0.0, 1e-3, 1e-2, 5e-2, 1e-1}
    assert ba.edge_onnx and ba.manifest["edge_onnx"]["bytes"] == len(ba.edge_onnx)  # a torch-free edge serves it
    # the same run interrupted after stage 1 and resumed gives the very same codec
    b = tmp_path / "b.snn"
    assert main(common + ["-o", str(b), "--stage2-epochs", "0"]) == 0
    assert (tmp_path / "b.snn.ckpt").is_file()
    assert main(common + ["-o", str(b), "--stage2-epochs", "1", "--resume"]) == 0
    assert load_bundle(b).fingerprint == ba.fingerprint


def test_missing_backbone_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "codec", "--backbone", str(tmp_path / "none.pt"), "-o", str(tmp_path / "x.snn")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
@needs_fmnist
def test_full_training_of_the_shipped_recipe(tmp_path):
    """The shipped bundle's recipe (codec/zoo/TRAINING.md), end to end: ~21-30 min on 2 cores."""
    bb = tmp_path / "backbone.pt"
    assert main(["train", "backbone", "--data", "fmnist", "--arch", "resnet14", "--epochs", "12", "-o", str(bb)]) == 0
    out = tmp_path / "fmnist.snn"
    assert main(["train", "codec", "--backbone", str(bb), "-o", str(out), "--split", "layer2", "--decode-to", "layer3",
                 "--enc-stride", "2", "--enc-hidden", "16", "--dec-hidden", "64", "--int8-aware",
                 "--stage2-epochs", "14", "--xai", "--seed", "0"]) == 0
    metrics = {r["ber"]: r["accuracy"] for r in load_bundle(out).metrics["results"]}
    assert metrics[0.0] >= 0.91 and metrics[0.01] >= 0.90 and metrics[0.05] >= 0.88 and metrics[0.1] >= 0.84


@needs_fmnist
def test_codec_with_an_earlier_split_and_a_decoder_that_stands_in_for_layer3(tmp_path):
    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "200",
                 "-o", str(bb)]) == 0
    out = tmp_path / "early.snn"
    assert main(["train", "codec", "--backbone", str(bb), "--count", "200", "--stage1-epochs", "1",
                 "--stage2-epochs", "1", "--split", "layer2", "--decode-to", "layer3", "--enc-stride", "2",
                 "--int8-aware", "--dec-hidden", "16", "--enc-hidden", "8", "-o", str(out)]) == 0
    b = load_bundle(out)
    assert b.manifest["config"]["backbone"]["kwargs"]["split"] == "layer2"
    assert b.manifest["config"]["backbone"]["kwargs"]["resume"] == "layer3"
    assert (b.backbone.split, b.backbone.resume) == ("layer2", "layer3")
    assert b.n_symbols == 98 and b.codec.out_shape == (32, 7, 7)
    assert "--decode-to layer3" in b.manifest["command"] and "--int8-aware" in b.manifest["command"]
    from codec.training.int8_grid import on_grid
    device_convs = [m.weight for s in b.backbone.head_stages() for m in s.modules() if isinstance(m, torch.nn.Conv2d)]
    device_convs += [b.codec.encoder.conv1.weight, b.codec.encoder.conv2.weight, b.codec.encoder.gdn.gamma_sqrt ** 2]
    assert len(device_convs) == 9 and all(on_grid(w, tol=0.1) for w in device_convs), "float16 storage keeps the grid (to 0.1 step)"
    assert not on_grid(b.backbone.stages["layer3"][0].conv1.weight), "the edge side is left alone"


def test_bad_split_names_are_a_clear_error(tmp_path, capsys):
    bb = tmp_path / "bb.pt"
    import torch

    from codec.model.backbones import build_backbone
    from codec.training.train_backbone import BACKBONE_FORMAT, BACKBONE_VERSION
    m = build_backbone("resnet8", width=0.5)
    torch.save({"format": BACKBONE_FORMAT, "version": BACKBONE_VERSION, "arch": "resnet8",
                "kwargs": {"width": 0.5, "split": "layer3"}, "state_dict": m.state_dict()}, bb)
    assert main(["train", "codec", "--backbone", str(bb), "--split", "layer3", "--decode-to", "layer1",
                 "-o", str(tmp_path / "x.snn")]) == 2
    assert "comes before the split" in capsys.readouterr().err


@needs_fmnist
def test_soft_demapper_codec_trains_exports_and_its_onnx_edge_agrees(tmp_path):
    """--soft-demapper: recorded in the codec config, the edge half (torch and its edge.onnx)
    reads received symbols as BER-dependent MMSE centres, and both engines agree."""
    import numpy as np

    from codec.bundle_file import load_edge_model
    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "200",
                 "-o", str(bb)]) == 0
    out = tmp_path / "soft.snn"
    assert main(["train", "codec", "--backbone", str(bb), "--count", "200", "--stage1-epochs", "1",
                 "--stage2-epochs", "1", "--soft-demapper", "--dec-hidden", "16", "--enc-hidden", "8",
                 "-o", str(out)]) == 0
    b = load_bundle(out)
    assert b.manifest["config"]["codec"]["demapper"] == "soft" and b.codec.demapper is not None
    assert b.manifest["config"]["codec"]["ber_conditioning"] is False   # opt-in (--ber-conditioning)
    edge = b.edge_half()
    rng = np.random.default_rng(0)
    sym = rng.integers(0, b.levels, (4, b.n_symbols))
    erased = np.zeros_like(sym, dtype=bool)
    ber = np.array([0.0, 1e-2, 1e-1, 0.2], dtype=np.float32)
    with torch.no_grad():
        ref = edge(torch.from_numpy(sym), torch.from_numpy(erased), torch.from_numpy(ber)).numpy()
        same = edge(torch.from_numpy(sym), torch.from_numpy(erased), torch.zeros(4)).numpy()
    assert not np.allclose(ref[1:], same[1:], atol=1e-4)    # the BER changes what symbols are worth
    onnx_edge = load_edge_model(out)
    got = onnx_edge.session.run(None, {"symbols": sym.astype(np.int64), "erased": erased, "ber": ber})[0]
    assert np.allclose(got, ref, atol=1e-4)


@needs_fmnist
def test_ber_conditioning_is_opt_in_and_contradicting_flags_are_refused(tmp_path, capsys):
    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "200",
                 "-o", str(bb)]) == 0
    common = ["train", "codec", "--backbone", str(bb), "--count", "200", "--stage1-epochs", "0",
              "--stage2-epochs", "1", "--dec-hidden", "8", "--enc-hidden", "8"]
    assert main(common + ["--ber-conditioning", "-o", str(tmp_path / "on.snn")]) == 0
    assert load_bundle(tmp_path / "on.snn").manifest["config"]["codec"]["ber_conditioning"] is True
    assert main(common + ["--ber-conditioning", "--no-ber-conditioning", "-o", str(tmp_path / "x.snn")]) == 2
    assert "contradict" in capsys.readouterr().err
