"""Your own images: `snn train backbone|codec`, `snn eval` and `snn export` on a generated image
folder tree, end to end from the CLI (a few seconds of training on small images).
"""
import json

import numpy as np
import onnx
import pytest

from codec.bundle import load_bundle
from snn.cli import main

CLASSES = ["horizontal", "spot", "vertical"]  # sorted, as the loader numbers them


def _image(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy RGB pattern that tells its class: a bright band across, a band down, or a spot."""
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    a, b = rng.integers(0, size // 2, 2)
    if cls == 0:
        img[a:a + size // 3, :, 0] = 230
    elif cls == 2:
        img[:, b:b + size // 3, 1] = 230
    else:
        img[a:a + size // 3, b:b + size // 3, 2] = 230
    return img


def make_tree(root, per_class: int, seed: int = 0, split: bool = False) -> None:
    """PATH/<class>/*.png (or PATH/train + PATH/test); mixed sizes, one grayscale image, one JPEG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, cls in enumerate(CLASSES):
        for i in range(per_class):
            part = ("test" if i % 4 == 0 else "train") if split else ""
            folder = root / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            size = 20 if i % 7 == 3 else 16
            img = Image.fromarray(_image(k, size, rng))
            if i == 5:
                img = img.convert("L")
            img.save(folder / f"{i:03d}.{'jpg' if i == 6 else 'png'}")


def test_folder_tree_backbone_codec_eval_export(tmp_path, capsys):
    tree = tmp_path / "tree"
    make_tree(tree, per_class=60)
    bb, bundle, out = tmp_path / "bb.pt", tmp_path / "mine.snn", tmp_path / "export"
    assert main(["train", "backbone", "--data", f"folder:{tree}", "--holdout", "0.25", "--split-seed", "3",
                 "--arch", "resnet8", "--width", "0.5", "--epochs", "4", "-o", str(bb)]) == 0
    assert main(["train", "codec", "--backbone", str(bb), "-o", str(bundle), "--enc-hidden", "8",
                 "--dec-hidden", "8", "--stage1-epochs", "1", "--stage2-epochs", "2", "--seed", "1"]) == 0
    b = load_bundle(bundle)
    assert b.classes == CLASSES and b.input_shape == (3, 16, 16)
    assert b.config["backbone"]["holdout"] == 0.25 and b.config["backbone"]["split_seed"] == 3
    assert b.metrics["count"] == 45  # 15 of 60 per class held out, the same split as the backbone's
    figures = tmp_path / "eval.json"
    assert main(["eval", str(bundle), "--ber", "0,0.1", "--seeds", "1", "--json", str(figures)]) == 0
    fig = json.loads(figures.read_text())
    assert fig["count"] == 45 and fig["backbone_accuracy"] > 0.6  # three easy patterns, learned
    assert main(["export", str(bundle), "-o", str(out), "--calib", "40", "--holdout", "10",
                 "--latency-runs", "0", "--no-edge"]) == 0
    report = json.loads((out / "verify.json").read_text())
    assert report["test_images"] == 45 and 0 < report["backbone_accuracy"] <= 1
    said = capsys.readouterr().out
    for check in report["checks"]:  # the export prints each thing it checked, with its verdict
        assert f"{'ok    ' if check['ok'] else 'MISSED'} {check['text']}" in said
    gap = report["backbone_accuracy"] - report["accuracy"]["torch"]["0"]
    assert report["passed"] is (all(c["ok"] for c in report["checks"])) and (gap <= 0.03 or not report["passed"])
    meta = {p.key: p.value for p in onnx.load(str(out / "encoder.int8.onnx")).metadata_props}
    assert json.loads(meta["snn.classes"]) == CLASSES


def test_folder_with_train_and_test_subfolders(tmp_path):
    from codec.training.common import load_split

    make_tree(tmp_path, per_class=8, split=True)
    train, test = load_split(f"folder:{tmp_path}")
    assert train.classes == test.classes == CLASSES
    assert train.images.shape == (18, 16, 16, 3) and test.images.shape == (6, 16, 16, 3)
    assert np.bincount(test.labels).tolist() == [2, 2, 2]


def test_single_tree_holdout_is_seeded_stratified_and_disjoint(tmp_path):
    from codec.datasets import load_dataset

    make_tree(tmp_path, per_class=10)
    a = load_dataset(f"folder:{tmp_path}:test", holdout=0.3, split_seed=0)
    again = load_dataset(f"folder:{tmp_path}:test", holdout=0.3, split_seed=0)
    other = load_dataset(f"folder:{tmp_path}:test", holdout=0.3, split_seed=1)
    train = load_dataset(f"folder:{tmp_path}:train", holdout=0.3, split_seed=0)
    whole = load_dataset(f"folder:{tmp_path}")
    assert np.bincount(a.labels).tolist() == [3, 3, 3] and len(train) == 21 and len(whole) == 30
    assert np.array_equal(a.images, again.images) and not np.array_equal(a.images, other.images)
    held = {x.tobytes() for x in a.images}
    assert not held & {x.tobytes() for x in train.images}


def test_grayscale_tree_is_one_channel_and_shape_is_forced(tmp_path):
    from PIL import Image

    from codec.datasets import load_dataset

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i, size in enumerate((12, 12, 30)):
            Image.fromarray(np.full((size, size), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    assert load_dataset(f"folder:{tmp_path}").images.shape == (6, 12, 12, 1)
    assert load_dataset(f"folder:{tmp_path}", shape=(3, 8, 10)).images.shape == (6, 8, 10, 3)


def test_single_tree_without_holdout_names_the_flag(tmp_path, capsys):
    make_tree(tmp_path / "tree", per_class=4)
    assert main(["train", "backbone", "--data", f"folder:{tmp_path / 'tree'}", "-o", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err
    assert "--holdout" in err and "Traceback" not in err


@pytest.mark.parametrize("holdout", ["0", "1.5"])
def test_bad_holdout_is_a_clear_error(tmp_path, capsys, holdout):
    make_tree(tmp_path / "tree", per_class=4)
    assert main(["train", "backbone", "--data", f"folder:{tmp_path / 'tree'}", "--holdout", holdout,
                 "-o", str(tmp_path / "b.pt")]) == 2
    assert "--holdout" in capsys.readouterr().err


def test_finetune_head_trains_the_device_stages_on_their_int8_grid(tmp_path, capsys):
    import torch

    from codec.training.int8_grid import on_grid
    from codec.training.train_backbone import load_backbone_file

    tree = tmp_path / "tree"
    make_tree(tree, per_class=30)
    bb, bundle = tmp_path / "bb.pt", tmp_path / "ft.snn"
    assert main(["train", "backbone", "--data", f"folder:{tree}", "--holdout", "0.2", "--arch", "resnet8",
                 "--width", "0.5", "--epochs", "2", "-o", str(bb)]) == 0
    assert main(["train", "codec", "--backbone", str(bb), "-o", str(bundle), "--enc-hidden", "8", "--dec-hidden", "8",
                 "--stage1-epochs", "1", "--stage2-epochs", "2", "--finetune-head", "--int8-aware",
                 "--head-lr", "1e-2"]) == 0
    original, _ = load_backbone_file(bb)
    b = load_bundle(bundle)
    assert b.manifest["finetune_head"] is True
    head = [k for k in b.backbone.state_dict() if k.startswith("stages.") and "conv" in k and k.endswith("weight")
            and any(k.startswith(f"stages.{s}.") for s in b.backbone.split_points[:b.backbone.split_points.index(
                b.backbone.split) + 1])]
    assert head
    moved = [k for k in head if not torch.allclose(b.backbone.state_dict()[k], original.state_dict()[k].half().float(),
                                                   atol=1e-3)]
    assert moved, "fine-tuning left every device-side conv where it was"
    assert all(on_grid(b.backbone.state_dict()[k], tol=0.25) for k in head)  # to float16 precision
    err = capsys.readouterr().err
    gap = b.metrics["backbone_accuracy"] - b.metrics["results"][0]["accuracy"]
    assert ("WARNING" in err and "--stage2-steps" in err) == (gap > 0.03)
    # a bundle stands in for its backbone, and --init continues from its codec
    again = tmp_path / "again.snn"
    assert main(["train", "codec", "--backbone", str(bundle), "--init", str(bundle), "-o", str(again),
                 "--stage1-epochs", "0", "--stage2-epochs", "1"]) == 0
    c = load_bundle(again)
    assert c.config["codec"] == b.config["codec"] and c.classes == CLASSES


def test_every_data_flag_names_the_split_suffix():
    """Each --data of every subcommand says which split a spec reads (:train|:test|:val)."""
    from snn.cli import SUBCOMMANDS, build_parser

    seen = 0
    for name in SUBCOMMANDS:
        stack = [build_parser([name])]
        while stack:
            parser = stack.pop()
            for action in parser._actions:
                if hasattr(action, "choices") and isinstance(action.choices, dict):
                    stack.extend(action.choices.values())
                elif "--data" in action.option_strings:
                    seen += 1
                    assert all(s in action.help for s in (":train", ":test", ":val")), (parser.prog, action.help)
    assert seen >= 8
