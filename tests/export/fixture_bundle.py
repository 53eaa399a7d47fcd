"""A tiny stand-in bundle for export/device tests: the codec's own modules, random weights.

Test fixture only (never shipped): same attributes and halves as `codec.bundle.Bundle`, so the
export pipeline can be exercised without a trained model.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from codec.model.backbones import build_backbone
from codec.model.semantic_codec import DeviceHalf, EdgeHalf, Normalise, SemanticCodec
from codec.wire.packing import bits_per_symbol


class TinyBundle:
    def __init__(self, seed: int = 0, levels: int = 8):
        torch.manual_seed(seed)
        self.name = "tiny-fixture"
        self.input_shape = (1, 28, 28)
        self.input_mean, self.input_std = [0.286], [0.353]
        self.backbone = build_backbone("resnet8", in_channels=1, n_classes=10, width=0.5, split="layer1").eval()
        self.codec = SemanticCodec(self.backbone.split_shape(self.input_shape), levels=levels, channels=2,
                                   enc_hidden=8, dec_hidden=16).eval()
        self.normalise = Normalise(self.input_mean, self.input_std)
        self.levels = levels
        self.bits_per_symbol = bits_per_symbol(levels)
        self.gray = True
        self.symbol_shape = self.codec.symbol_shape
        self.n_symbols = self.codec.n_symbols
        self.payload_bytes = (self.n_symbols * self.bits_per_symbol + 7) // 8
        self.centers = self.codec.quantizer.centres().detach().numpy().astype(np.float32)
        self.classes = [str(i) for i in range(10)]
        self.fingerprint = hashlib.sha256(b"tiny-fixture-%d" % seed).digest()[:4]
        self.config = dict(self.codec.config)
        self.metrics = {}

    def device_half(self):
        return DeviceHalf(self.normalise, self.backbone, self.codec).eval()

    def edge_half(self):
        return EdgeHalf(self.backbone, self.codec).eval()
