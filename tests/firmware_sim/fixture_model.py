"""A small encoder shaped like the shipped one, exported and int8-quantized (QDQ) for the MCU tests.

uint8 NHWC image -> /255 -> (x - mean)/std -> conv+BN+ReLU stem -> residual block -> SQ encoder
(conv, GDN, PReLU, conv) -> power normalisation -> ArgMin |z - c| -> uint8 symbols, quantized with
onnxruntime's static QDQ quantizer, per-channel weights, calibrated on random images.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def build_fixture(path: Path, seed: int = 0, calib: np.ndarray | None = None, hidden: int = 8,
                  stem: int = 8, levels: int = 8, image: int = 16) -> Path:
    import onnx
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from torch import nn

    from codec.model.backbones import BasicBlock
    from codec.model.encoder import Encoder
    from codec.model.quantizer import SoftQuantizer
    from codec.model.semantic_codec import Normalise

    torch.manual_seed(seed)

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = Normalise([0.286], [0.353])
            self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
            self.block = BasicBlock(stem, stem, 1)
            self.enc = Encoder(stem, 2, hidden, 3, 1)
            self.q = SoftQuantizer(levels)

        def forward(self, img):
            x = img.to(torch.float32).permute(0, 3, 1, 2) * (1.0 / 255.0)
            z = self.enc(self.block(self.stem(self.norm(x))))
            idx = self.q.assign(z)
            return idx.reshape(idx.shape[0], -1).to(torch.uint8)

    g = Graph().eval()
    with torch.no_grad():  # non-trivial BN statistics and GDN parameters
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        g.enc.gdn.gamma_sqrt.add_(0.05 * torch.rand_like(g.enc.gdn.gamma_sqrt))
        g.enc.act.weight.uniform_(0.05, 0.4)
    float_path = Path(path).with_suffix(".float.onnx")
    example = torch.zeros(1, image, image, 1, dtype=torch.uint8)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(g, (example,), str(float_path), opset_version=17, dynamo=False,
                          input_names=["image"], output_names=["symbols"],
                          dynamic_axes={"image": {0: "batch"}, "symbols": {0: "batch"}})
    rng = np.random.default_rng(seed)
    if calib is None:
        calib = rng.integers(0, 256, size=(32, image, image, 1), dtype=np.uint8)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    model = onnx.load(str(path))
    centres = g.q.centres().detach().numpy().tolist()
    bits, n_symbols = int(levels - 1).bit_length(), 2 * image * image
    # the metadata an exported encoder carries (validated by codec.wire.encoder_meta on every read)
    for key, value in {"snn.format": "semanticnn-encoder/1", "snn.centers": json.dumps(centres),
                       "snn.levels": json.dumps(levels), "snn.bits_per_symbol": json.dumps(bits),
                       "snn.fingerprint": "12345678", "snn.n_symbols": json.dumps(n_symbols),
                       "snn.payload_bits": json.dumps(n_symbols * bits),
                       "snn.input": json.dumps({"shape": [image, image, 1]})}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return Path(path)
