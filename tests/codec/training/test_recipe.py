"""codec/training/recipe.py: the validated recipe `train_codec` takes, and the CLI built from it."""
import dataclasses
from pathlib import Path

import pytest

from codec.datasets import fmnist_dir
from codec.training.recipe import CodecRecipe
from snn.cli import build_parser, main
from snn.errors import SnnError


def _parse(*flags):
    argv = ["train", "codec", "--backbone", "bb.pt", "-o", "out.snn", *flags]
    return build_parser(argv).parse_args(argv)


def test_the_cli_defaults_are_the_recipe_fields():
    from snn.train_cli import codec_recipe

    assert codec_recipe(_parse()) == CodecRecipe(backbone=Path("bb.pt"), out=Path("out.snn"))
    got = codec_recipe(_parse("--levels", "4", "--xai", "--init", "b.snn", "--ber-max", "0.1"))
    assert (got.levels, got.xai, got.init, got.ber_max) == (4, True, Path("b.snn"), 0.1)
    # every field is a flag of `snn train codec`, named after it
    assert {f.name for f in dataclasses.fields(CodecRecipe)} <= set(vars(_parse()))


@pytest.mark.parametrize("change,flag", [({"ber_min": 0.0}, "--ber-min"), ({"ber_max": 0.9}, "--ber-max"),
                                         ({"clean_share": 1.5}, "--clean-share"), ({"levels": 0}, "--levels"),
                                         ({"count": 0}, "--count"), ({"holdout": 1.0}, "--holdout"),
                                         ({"stage2_epochs": -1}, "--stage2-epochs")])
def test_a_recipe_that_cannot_train_is_refused_naming_its_flag(change, flag):
    with pytest.raises(SnnError, match=flag):
        CodecRecipe(backbone=Path("bb.pt"), out=Path("out.snn"), **change)


def test_the_cli_refuses_a_bad_recipe_in_one_line(tmp_path, capsys):
    assert main(["train", "codec", "--backbone", str(tmp_path / "bb.pt"), "-o", str(tmp_path / "x.snn"),
                 "--ber-min", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ber-min" in err[0]


@pytest.mark.skipif(not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST missing")
def test_the_bundle_is_written_once_with_its_edge_half(tmp_path, monkeypatch):
    import codec.bundle

    bb = tmp_path / "bb.pt"
    assert main(["train", "backbone", "--arch", "resnet8", "--width", "0.5", "--epochs", "1", "--count", "200",
                 "-o", str(bb)]) == 0
    writes = []
    real = codec.bundle.write_bundle
    monkeypatch.setattr(codec.bundle, "write_bundle", lambda *a, **k: writes.append(a[0]) or real(*a, **k))
    out = tmp_path / "c.snn"
    assert main(["train", "codec", "--backbone", str(bb), "--count", "200", "--stage1-epochs", "0",
                 "--stage2-epochs", "1", "--dec-hidden", "8", "--enc-hidden", "8", "-o", str(out)]) == 0
    assert writes == [out]
    bundle = codec.bundle.load_bundle(out)
    assert bundle.edge_onnx and bundle.metrics["results"]
