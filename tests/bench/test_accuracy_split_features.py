"""Raw-feature baselines on a bundle whose decoder stands in for later stages (--decode-to)."""
import numpy as np

from bench.accuracy import Classifier
from codec.bundle import load_bundle


def test_raw_split_features_go_through_every_stage_after_the_split(tmp_path, make_tiny_bundle):
    bundle = load_bundle(make_tiny_bundle(tmp_path / "r.snn", split="layer2", resume="layer3", enc_stride=2))
    assert (bundle.backbone.split, bundle.backbone.resume) == ("layer2", "layer3")
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    clf = Classifier(bundle, batch_size=16)
    feats = clf.features(images)
    assert feats.shape[1:] == (16, 14, 14)  # layer2 of a half-width ResNet-8, what the device has
    assert np.array_equal(clf.tail(feats), clf.images(images))
