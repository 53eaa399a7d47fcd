"""A tiny bundle file (random weights, the codec's own modules) for fast benchmark tests."""
from __future__ import annotations

import pytest


def write_tiny_bundle(path, seed: int = 0, split: str = "layer1", resume: str | None = None, **codec_kw):
    """resume: a later stage the decoder reconstructs (like `snn train codec --decode-to`)."""
    import torch

    from codec.bundle import make_manifest, write_bundle
    from codec.model.backbones import build_backbone
    from codec.model.semantic_codec import SemanticCodec

    torch.manual_seed(seed)
    kwargs = {"in_channels": 1, "n_classes": 10, "width": 0.5, "split": split}
    if resume is not None:
        kwargs["resume"] = resume
    backbone = build_backbone("resnet8", **kwargs).eval()
    if resume is not None:
        codec_kw.setdefault("out_shape", backbone.resume_shape((1, 28, 28)))
    codec = SemanticCodec(backbone.split_shape((1, 28, 28)), levels=8, channels=2, enc_hidden=8, dec_hidden=16,
                          **codec_kw)
    codec.quantizer.freeze()
    record = {"arch": "resnet8", "kwargs": kwargs, "input_shape": [1, 28, 28], "input_mean": [0.286],
              "input_std": [0.353], "classes": [str(i) for i in range(10)], "data": "fmnist", "accuracy": None}
    centres = codec.quantizer.centres().detach().numpy()
    manifest = make_manifest("tiny-bench", record, codec.config, centres, "test fixture", seed)
    return write_bundle(path, manifest, backbone.state_dict(), codec.state_dict())


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny.snn")


@pytest.fixture(scope="session")
def make_tiny_bundle():
    """`write_tiny_bundle` itself, for tests that need another shape of bundle."""
    return write_tiny_bundle
