"""`snn train codec --board NAME | --device-budget BYTES`: the device shape that fits (export/device_fit.py),
and the warning a codec that fits no board gets at the end of training."""
import json
import sys
from pathlib import Path

import pytest
import torch

from snn.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_folder_cli import make_tree  # noqa: E402


def test_the_f411_gets_the_shipped_64kb_shape_of_a_resnet14():
    """The fit measures each candidate's int8 file as `snn export` writes it: on a Fashion-MNIST-shaped
    ResNet-14 the F411 (64 KiB bar) gets the shape codec/zoo/TRAINING.md ships."""
    from codec.model.backbones import build_backbone
    from export.device_fit import fit_device

    torch.manual_seed(0)
    backbone = build_backbone("resnet14", in_channels=1, n_classes=10).eval()
    assert backbone.split == backbone.resume == "layer3"                        # the whole backbone on the device
    record = {"input_shape": [1, 28, 28], "input_mean": [0.286], "input_std": [0.353], "kwargs": {"n_classes": 10},
              "classes": [str(i) for i in range(10)], "arch": "resnet14"}
    base = {"split": None, "decode_to": None, "enc_stride": 1, "enc_kernel": 3, "enc_hidden": 32, "dec_hidden": 48}
    said = []
    shape, m, tried = fit_device(backbone, record, base, set(), levels=8, channels=2, board="stm32f411",
                                 log=said.append)
    assert (shape.split, shape.decode_to, shape.enc_stride, shape.enc_hidden, shape.dec_hidden) == \
        ("layer2", "layer3", 2, 16, 64)
    assert 60_000 < m["int8_bytes"] <= 65_536 - 256 and m["board_fits"] and m["n_symbols"] == 98
    assert tried[0]["int8_bytes"] > 200_000                                      # the default shape: ~219 KB
    assert backbone.split == "layer3" and len(said) == len(tried)               # left as it was


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("board")
    make_tree(tmp / "tree", per_class=24)
    bb = tmp / "bb.pt"
    assert main(["train", "backbone", "--data", f"folder:{tmp / 'tree'}", "--holdout", "0.25", "--arch", "resnet14",
                 "--epochs", "1", "-o", str(bb)]) == 0
    return bb


def _codec(backbone, out, *extra):
    return main(["train", "codec", "--backbone", str(backbone), "-o", str(out), "--stage1-epochs", "1",
                 "--stage2-epochs", "1", *extra])


def test_device_budget_trains_a_shape_that_export_passes(backbone, tmp_path, capsys):
    from codec.bundle import load_bundle

    assert _codec(backbone, tmp_path / "small.snn", "--device-budget", "40000") == 0
    out = capsys.readouterr().out
    assert "device shape for 40,000 B: --split layer1" in out and "fits nrf52840, stm32f411" in out
    b = load_bundle(tmp_path / "small.snn")
    assert "--device-budget 40000" in b.manifest["command"] and "--split layer1" in b.manifest["command"]
    assert main(["export", str(tmp_path / "small.snn"), "-o", str(tmp_path / "x"), "--calib", "30", "--holdout", "5",
                 "--latency-runs", "0", "--no-edge"]) == 0
    report = json.loads((tmp_path / "x" / "verify.json").read_text())
    assert report["int8_bytes"] <= 40_000


def test_a_codec_that_fits_no_board_says_so_at_the_end_of_training(backbone, tmp_path, capsys):
    assert _codec(backbone, tmp_path / "big.snn") == 0
    err = capsys.readouterr().err
    assert "fits none of the boards" in err and "--board" in err


@pytest.mark.parametrize("extra, needle", [(["--board", "nosuch"], "nosuch"),
                                           (["--device-budget", "2000", "--split", "stem"], "no device shape of this backbone fits"),
                                           (["--device-budget", "-5"], "positive")])
def test_bad_board_or_budget_is_one_clear_error(backbone, tmp_path, capsys, extra, needle):
    assert _codec(backbone, tmp_path / "no.snn", *extra) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
