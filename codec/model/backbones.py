"""Backbones with named split points, written here so that torchvision is not a dependency.

Every backbone is a sequence of named stages. ``split`` names the last stage that runs on the
device: ``head(x)`` runs the stages up to and including it, ``tail(f)`` runs the rest (pooling
and classifier included). ``split_points`` lists the legal names in order.

``resume`` (default: ``split``) names the stage whose output the codec's decoder reconstructs:
the edge then runs only the stages after it. With ``resume`` later than ``split`` the stages in
between run on neither side; the decoder stands in for them (it is trained to reproduce their
output, ``bridge(head(x))``). That keeps both halves small: the device stops early (a small
int8 file for an MCU) and the edge does not pay for the skipped stages either.

Families:

- ``resnet{6n+2}`` (resnet8, resnet14, resnet20, ...): the CIFAR ResNet of He et al. (2016),
  three stages of n basic blocks with widths (16, 32, 64) x ``width``, for 28-32 px inputs.
  Stage strides 1, 2, 2: a 28 px image gives 28, 14 and 7 px maps.
- ``resnet18`` / ``resnet50``: the ImageNet ResNets (basic / bottleneck blocks) for 224 px.
- ``mobilenetv2``: Sandler et al. (2018) inverted residuals with a width multiplier; the stem
  stride is 1 for small (<= 64 px) inputs and 2 for 224 px.

A registry maps the name to a constructor so that a checkpoint only needs to store
``{"arch": name, "kwargs": {...}}`` next to its weights.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Callable

import torch
from torch import nn

from snn.registry import Registry


class SplitBackbone(nn.Module):
    """An ordered set of named stages plus a classifier; split anywhere between stages."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", classifier: nn.Module, split: str):
        super().__init__()
        self.stages = nn.ModuleDict(stages)
        self.classifier = classifier
        self.split_points = list(stages.keys())
        self.set_split(split)

    def set_split(self, split: str, resume: str | None = None) -> None:
        """Device runs up to `split`; the edge continues after `resume` (default: `split`)."""
        resume = split if resume is None else resume
        for name in (split, resume):
            if name not in self.split_points:
                raise ValueError(f"unknown split point '{name}'; choose one of {self.split_points}")
        if self.split_points.index(resume) < self.split_points.index(split):
            raise ValueError(f"the decoder cannot reconstruct '{resume}', which comes before the split '{split}'")
        self.split, self.resume = split, resume

    def _run(self, x: torch.Tensor, first: int, last: int) -> torch.Tensor:
        for name in self.split_points[first:last]:
            x = self.stages[name](x)
        return x

    def _end(self, name: str) -> int:
        """Position just after stage `name` (a slice end)."""
        return self.split_points.index(name) + 1

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Device side: the stem up to and including the split stage."""
        return self._run(x, 0, self._end(self.split))

    def head_stages(self) -> list[nn.Module]:
        """The stages `head` runs (the device side of the backbone)."""
        return [self.stages[name] for name in self.split_points[: self._end(self.split)]]

    def bridge(self, f: torch.Tensor) -> torch.Tensor:
        """Split features -> the features the decoder reconstructs (identity when resume == split)."""
        return self._run(f, self._end(self.split), self._end(self.resume))

    def tail(self, f: torch.Tensor) -> torch.Tensor:
        """Edge side: the stages after `resume`, pooling and classifier -> logits."""
        return self.classifier(self._run(f, self._end(self.resume), len(self.split_points)))

    def is_edge_stage(self, name: str) -> bool:
        """Whether stage `name` runs on the edge (after `resume`)."""
        return self.split_points.index(name) >= self._end(self.resume)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.bridge(self.head(x)))

    def split_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) of the features at the split point for one input of `input_shape`."""
        return self._shape(input_shape, self._end(self.split))

    def resume_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) of the features the decoder reconstructs (output of stage `resume`)."""
        return self._shape(input_shape, self._end(self.resume))

    def _shape(self, input_shape: tuple[int, int, int], last: int) -> tuple[int, int, int]:
        was = self.training
        self.eval()
        with torch.no_grad():
            shape = tuple(self._run(torch.zeros(1, *input_shape), 0, last).shape[1:])
        self.train(was)
        return shape  # type: ignore[return-value]


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when the shape changes)."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.short = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.short(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), *_bn_relu(planes),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False), *_bn_relu(planes),
            nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.short(x))


def _classifier(c: int, n_classes: int, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c, n_classes))
    return nn.Sequential(*layers)


def cifar_resnet(depth: int, in_channels: int = 1, n_classes: int = 10, width: float = 1.0,
                 split: str = "layer3") -> SplitBackbone:
    """ResNet-(6n+2) for 28-32 px: stem, then stages of n blocks at widths 16/32/64 x width."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, ...), got {depth}")
    n = (depth - 2) // 6
    widths = [max(8, int(round(w * width))) for w in (16, 32, 64)]
    stages: "OrderedDict[str, nn.Module]" = OrderedDict()
    stages["stem"] = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), *_bn_relu(widths[0]))
    cin = widths[0]
    for i, (w, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
        blocks = []
        for j in range(n):
            blocks.append(BasicBlock(cin, w, stride if j == 0 else 1))
            cin = w
        stages[f"layer{i}"] = nn.Sequential(*blocks)
    return SplitBackbone(stages, _classifier(cin, n_classes), split)


def imagenet_resnet(depth: int, in_channels: int = 3, n_classes: int = 1000, width: float = 1.0,
                    split: str = "layer1") -> SplitBackbone:
    """ResNet-18 (basic blocks) or ResNet-50 (bottlenecks) for 224 px inputs."""
    layout = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}
    if depth not in layout:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(layout)}, got {depth}")
    block, counts = layout[depth]
    base = max(8, int(round(64 * width)))
    stages: "OrderedDict[str, nn.Module]" = OrderedDict()
    stages["stem"] = nn.Sequential(nn.Conv2d(in_channels, base, 7, 2, 3, bias=False), *_bn_relu(base),
                                   nn.MaxPool2d(3, 2, 1))
    cin = base
    for i, (count, stride) in enumerate(zip(counts, (1, 2, 2, 2)), start=1):
        planes = base * 2 ** (i - 1)
        blocks = []
        for j in range(count):
            blocks.append(block(cin, planes, stride if j == 0 else 1))
            cin = planes * block.expansion
        stages[f"layer{i}"] = nn.Sequential(*blocks)
    return SplitBackbone(stages, _classifier(cin, n_classes), split)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def _divisible(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


def mobilenet_v2(in_channels: int = 3, n_classes: int = 1000, width: float = 1.0, small_input: bool = False,
                 split: str = "layer2") -> SplitBackbone:
    """MobileNetV2 with a width multiplier; `small_input` keeps resolution for 28-32 px images."""
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]
    if small_input:  # 32 px: drop two of the five downsamplings
        setting = [(t, c, n, 1 if i in (1, 3) else s) for i, (t, c, n, s) in enumerate(setting)]
    stem_c = _divisible(32 * width)
    stages: "OrderedDict[str, nn.Module]" = OrderedDict()
    stages["stem"] = nn.Sequential(nn.Conv2d(in_channels, stem_c, 3, 1 if small_input else 2, 1, bias=False),
                                   nn.BatchNorm2d(stem_c), nn.ReLU6(inplace=True))
    cin = stem_c
    for i, (t, c, n, s) in enumerate(setting, start=1):
        cout = _divisible(c * width)
        blocks = []
        for j in range(n):
            blocks.append(InvertedResidual(cin, cout, s if j == 0 else 1, t))
            cin = cout
        stages[f"layer{i}"] = nn.Sequential(*blocks)
    last = _divisible(1280 * max(1.0, width))
    stages["last"] = nn.Sequential(nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True))
    return SplitBackbone(stages, _classifier(last, n_classes, dropout=0.2), split)


# name -> constructor(**kwargs) -> SplitBackbone (kwargs: in_channels, n_classes, width, split)
BACKBONES: Registry[Callable[..., SplitBackbone]] = Registry("backbone")
for _depth in (8, 14, 20, 32, 44, 56):
    BACKBONES.add(f"resnet{_depth}", partial(cifar_resnet, _depth), summary="CIFAR-style ResNet, 28-32 px")
for _depth in (18, 34, 50):
    BACKBONES.add(f"resnet{_depth}", partial(imagenet_resnet, _depth), summary="ImageNet-style ResNet")
BACKBONES.add("mobilenetv2", mobilenet_v2, summary="MobileNetV2, 224 px")
BACKBONES.add("mobilenetv2_small", partial(mobilenet_v2, small_input=True), summary="MobileNetV2 for 32 px")
DEFAULT_SPLITS = {"resnet18": "layer1", "resnet34": "layer1", "resnet50": "layer1",
                  "mobilenetv2": "layer3", "mobilenetv2_small": "layer3"}


def build_backbone(arch: str, **kwargs) -> SplitBackbone:
    """Construct a backbone by registry name (kwargs: in_channels, n_classes, width, split, resume)."""
    entry = BACKBONES.entry(arch)    # an unknown name: UnknownNameError (an SnnError and a ValueError)
    kwargs = dict(kwargs)
    resume = kwargs.pop("resume", None)
    if "split" not in kwargs and entry.name in DEFAULT_SPLITS:
        kwargs["split"] = DEFAULT_SPLITS[entry.name]
    model = entry.value(**kwargs)
    model.set_split(model.split, resume)
    return model


def count_macs(module: nn.Module, example: torch.Tensor | tuple) -> int:
    """Multiply-accumulates of one forward pass (convolutions, transposed convs, matmuls), per batch.

    Counted by torch's FlopCounterMode at the aten level, so functional convolutions are included;
    elementwise work (GDN square roots, activations) is not, as usual for MAC counts.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*example) if isinstance(example, tuple) else module(example)
    return int(counter.get_total_flops()) // 2
