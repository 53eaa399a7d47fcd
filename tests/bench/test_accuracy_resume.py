"""Raw-feature baselines on a bundle whose decoder stands in for later stages (--decode-to)."""
import numpy as np
import torch

from bench.accuracy import Classifier
from codec.backbones import build_backbone
from codec.bundle import load_bundle, make_manifest, write_bundle
from codec.model import SemanticCodec


def test_raw_split_features_go_through_every_stage_after_the_split(tmp_path):
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "n_classes": 10, "width": 0.5, "split": "layer2", "resume": "layer3"}
    backbone = build_backbone("resnet8", **kwargs).eval()
    codec = SemanticCodec(backbone.split_shape((1, 28, 28)), enc_hidden=8, dec_hidden=8, enc_stride=2,
                          out_shape=backbone.resume_shape((1, 28, 28)))
    codec.quantizer.freeze()
    record = {"arch": "resnet8", "kwargs": kwargs, "input_shape": [1, 28, 28], "input_mean": [0.286],
              "input_std": [0.353], "classes": [str(i) for i in range(10)], "data": "fmnist", "accuracy": None}
    manifest = make_manifest("resume", record, codec.config, codec.quantizer.centres().detach().numpy(), "test", 0)
    bundle = load_bundle(write_bundle(tmp_path / "r.snn", manifest, backbone.state_dict(), codec.state_dict()))
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    clf = Classifier(bundle, batch_size=16)
    feats = clf.features(images)
    assert feats.shape[1:] == (16, 14, 14)  # layer2 of a half-width ResNet-8, what the device has
    assert np.array_equal(clf.tail(feats), clf.images(images))
