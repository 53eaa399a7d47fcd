"""Backbones: named split points, head/tail composition, shapes for 28, 32 and 224 px."""
import pytest
import torch

from codec.model.backbones import BACKBONES, build_backbone, count_macs


@pytest.mark.parametrize("arch", ["resnet8", "resnet14", "resnet20"])
def test_cifar_resnet_split_shapes(arch):
    m = build_backbone(arch, in_channels=1, n_classes=10).eval()
    x = torch.randn(2, 1, 28, 28)
    assert m.split_points == ["stem", "layer1", "layer2", "layer3"]
    shapes = {"stem": (16, 28, 28), "layer1": (16, 28, 28), "layer2": (32, 14, 14), "layer3": (64, 7, 7)}
    with torch.no_grad():
        full = m(x)
        for split, shape in shapes.items():
            m.set_split(split)
            f = m.head(x)
            assert tuple(f.shape[1:]) == shape
            assert torch.allclose(m.tail(f), full, atol=1e-5)
    assert full.shape == (2, 10)


def test_resnet_for_32px_rgb():
    m = build_backbone("resnet20", in_channels=3, n_classes=100, width=0.5, split="layer2")
    assert m.split_shape((3, 32, 32)) == (16, 16, 16)


@pytest.mark.parametrize("arch,split,shape", [("resnet18", "layer1", (64, 56, 56)), ("resnet50", "layer1", (256, 56, 56))])
def test_imagenet_resnets_224(arch, split, shape):
    m = build_backbone(arch, in_channels=3, n_classes=1000, split=split).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        f = m.head(x)
        assert tuple(f.shape[1:]) == shape
        assert m.tail(f).shape == (1, 1000)


@pytest.mark.parametrize("arch,size", [("mobilenetv2", 224), ("mobilenetv2_small", 32)])
def test_mobilenetv2_width_and_size(arch, size):
    m = build_backbone(arch, in_channels=3, n_classes=10, width=0.5).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(m.tail(m.head(x)), m(x), atol=1e-5)
    wide = build_backbone(arch, in_channels=3, n_classes=10, width=1.0)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in m.parameters())


def test_mobilenetv2_mcu_keeps_the_device_stages_small():
    """The stride-2 stem: 28 px -> 14 px maps up to layer2, 7 px from layer3; the device half (stem..layer3)
    is a small share of the MACs, and head + tail is the whole model."""
    m = build_backbone("mobilenetv2_mcu", in_channels=1, n_classes=10, width=0.5).eval()
    assert m.split == "layer3" and m.split_shape((1, 28, 28)) == (16, 7, 7)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert m.stages["stem"](x).shape[2:] == (14, 14)
        assert torch.allclose(m.tail(m.head(x)), m(x), atol=1e-5)
    head = count_macs(m.head, x[:1])
    assert head < 3_000_000 and head < 0.2 * count_macs(m, x[:1])
    small = build_backbone("mobilenetv2_small", in_channels=1, n_classes=10, width=0.5)
    assert count_macs(small.head, x[:1]) > 3.5 * head  # the stride-1 stem keeps 28 px maps: 4x the work


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="unknown split point"):
        build_backbone("resnet8", split="layer9")
    assert "resnet14" in BACKBONES


def test_count_macs_of_a_conv():
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    assert count_macs(conv, torch.zeros(1, 2, 5, 5)) == 5 * 5 * 4 * 2 * 9


def test_resume_after_split_skips_the_stages_in_between():
    """split=layer2, resume=layer3: head stops at layer2, bridge is layer3, tail is pool + classifier."""
    m = build_backbone("resnet14", in_channels=1, n_classes=10, split="layer2", resume="layer3").eval()
    x = torch.randn(2, 1, 28, 28)
    assert (m.split, m.resume) == ("layer2", "layer3")
    assert m.split_shape((1, 28, 28)) == (32, 14, 14) and m.resume_shape((1, 28, 28)) == (64, 7, 7)
    with torch.no_grad():
        f = m.head(x)
        assert tuple(f.shape[1:]) == (32, 14, 14)
        assert torch.allclose(m.tail(m.bridge(f)), m(x), atol=1e-5)
        assert torch.equal(m.tail(m.bridge(f)), m.classifier(m.stages["layer3"](f)))
    assert m.is_edge_stage("layer3") is False and m.is_edge_stage("layer2") is False
    m.set_split("layer3")
    assert m.resume == "layer3" and m.is_edge_stage("layer3") is False
    m.set_split("layer1")
    assert m.is_edge_stage("layer2") and m.is_edge_stage("layer3")


def test_resume_before_split_is_refused():
    with pytest.raises(ValueError, match="comes before the split"):
        build_backbone("resnet8", split="layer3", resume="layer1")
    with pytest.raises(ValueError, match="unknown split point"):
        build_backbone("resnet8", split="layer2", resume="layer9")
