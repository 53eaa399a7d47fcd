"""The split model: backbone head -> encoder -> quantizer | channel | decoder -> backbone tail.

The decoder reconstructs the features at the backbone's `resume` stage (`out_shape`), which is
the split stage itself unless the codec was trained to stand in for the stages in between.

`SemanticCodec` holds the trainable parts (encoder, quantizer, decoder) and its config.
`DeviceHalf` and `EdgeHalf` are the two deployable graphs:

- DeviceHalf: images in [0, 1] (N, C, H, W) -> symbol indices int64 (N, S), S = C_b*h*w in
  (C, H, W) order. Normalisation, head, encoder, power norm and nearest centre are one graph
  with no data-dependent control flow, so it exports to ONNX (ArgMin over |z - c|).
- EdgeHalf: (indices int64 (N, S), erased bool (N, S), ber float32 (N,)) -> logits. Indices map
  to centres (or, with demapper "soft", to their MMSE centres at the BER: codec/model/demapper.py),
  erased symbols become 0 with a presence mask, cropped maps are padded back as erased, then
  decoder and tail.
"""
from __future__ import annotations

import torch
from torch import nn

from codec.model.decoder import Decoder
from codec.model.demapper import SoftDemapper, demap
from codec.model.encoder import Encoder, crop_window
from codec.model.quantizer import SoftQuantizer


class SemanticCodec(nn.Module):
    """Encoder + soft quantizer + BER-aware decoder for one split-point shape."""

    def __init__(self, split_shape: tuple[int, int, int], levels: int = 8, channels: int = 2, enc_hidden: int = 32,
                 enc_kernel: int = 3, enc_stride: int = 1, dec_hidden: int = 64, crop: float = 1.0,
                 ber_conditioning: bool = True, sigma: float = 10.0, gray: bool = True,
                 out_shape: tuple[int, int, int] | None = None, demapper: str = "hard"):
        super().__init__()
        c, h, w = split_shape
        self.config = {"split_shape": [c, h, w], "levels": levels, "channels": channels, "enc_hidden": enc_hidden,
                       "enc_kernel": enc_kernel, "enc_stride": enc_stride, "dec_hidden": dec_hidden, "crop": crop,
                       "ber_conditioning": ber_conditioning, "sigma": sigma, "gray": gray}
        if out_shape is not None:  # only when set, so older bundles keep their config (and fingerprint)
            self.config["out_shape"] = [int(v) for v in out_shape]
        if demapper not in ("hard", "soft"):
            raise ValueError(f"demapper is 'hard' or 'soft', not {demapper!r}")
        if demapper != "hard":     # likewise
            self.config["demapper"] = demapper
        self.demapper = SoftDemapper(levels, gray) if demapper == "soft" else None
        self.encoder = Encoder(c, channels, enc_hidden, enc_kernel, enc_stride, crop)
        self.quantizer = SoftQuantizer(levels, sigma)
        with torch.no_grad():
            full = self.encoder.conv1(torch.zeros(1, c, h, w)).shape[2:]
        self.full_map = (channels, int(full[0]), int(full[1]))
        out_c, out_h, out_w = (c, h, w) if out_shape is None else out_shape
        dec_stride = enc_stride if out_shape is None else out_h // self.full_map[1]
        if out_shape is not None and (dec_stride < 1 or self.full_map[1] * dec_stride != out_h
                                      or self.full_map[2] * dec_stride != out_w):
            raise ValueError(f"the decoder cannot map {self.full_map[1]}x{self.full_map[2]} symbols to "
                             f"{out_h}x{out_w} features: choose --enc-stride so that the sizes divide")
        self.out_shape = (out_c, out_h, out_w)
        self.decoder = Decoder(channels, out_c, dec_hidden, dec_stride, ber_conditioning)
        top, left, ch, cw = crop_window(full[0], full[1], crop)
        self.window = (top, left, ch, cw)
        self.symbol_shape = (channels, ch, cw)
        self.n_symbols = channels * ch * cw

    @classmethod
    def from_config(cls, config: dict) -> "SemanticCodec":
        cfg = dict(config)
        if cfg.get("out_shape") is not None:
            cfg["out_shape"] = tuple(cfg["out_shape"])
        return cls(tuple(cfg.pop("split_shape")), **cfg)

    def unflatten(self, values: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S) values/presence -> full-map (N, C_b, H, W) tensors, crop borders marked absent."""
        n = values.shape[0]
        c, ch, cw = self.symbol_shape
        v = values.reshape(n, c, ch, cw)
        p = present.reshape(n, c, ch, cw).to(values.dtype)
        _, fh, fw = self.full_map
        if (ch, cw) != (fh, fw):
            top, left, _, _ = self.window
            pad = (left, fw - cw - left, top, fh - ch - top)
            v = nn.functional.pad(v, pad)
            p = nn.functional.pad(p, pad)
        return v, p

    def decode(self, values: torch.Tensor, present: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        v, p = self.unflatten(values, present)
        return self.decoder(v, p, ber)


class Normalise(nn.Module):
    """(x - mean) / std per channel, with constants stored as buffers (exported into the graph)."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class DeviceHalf(nn.Module):
    """images in [0,1] -> symbol indices (N, S) int64."""

    def __init__(self, normalise: Normalise, backbone, codec: SemanticCodec):
        super().__init__()
        self.normalise = normalise
        self.backbone = backbone
        self.encoder = codec.encoder
        self.quantizer = codec.quantizer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self.backbone.head(self.normalise(images)))
        idx = self.quantizer.assign(z)
        return idx.reshape(idx.shape[0], -1)


class EdgeHalf(nn.Module):
    """(indices, erased, ber) -> logits: centre lookup, erasure mask, decoder, backbone tail."""

    def __init__(self, backbone, codec: SemanticCodec):
        super().__init__()
        self.backbone = backbone
        self.codec = codec
        self.register_buffer("centres", codec.quantizer.centres().detach().clone())

    def forward(self, symbols: torch.Tensor, erased: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        present = (~erased).to(torch.float32)
        ber = ber.to(torch.float32)
        values = demap(self.centres, symbols.long(), ber, self.codec.demapper)
        feats = self.codec.decode(values, present, ber)
        return self.backbone.tail(feats)
