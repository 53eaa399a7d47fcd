"""Fit the device to a budget: the split and encoder shape whose int8 encoder fits a board.

`snn train codec --board NAME` (any board of `snn mcu boards`) or `--device-budget BYTES` picks,
before training, the first shape in this order whose int8 encoder fits:

1. the backbone's own split (the edge's decoder reconstructs its output), then each earlier
   stage (the decoder then also stands in for the stages between: ``--decode-to``);
2. at each split, encoder hidden widths from the requested one down (32, 16, 8);

with the encoder's stride chosen so that the symbol grid, hence the bytes on air, stays what the
backbone's own split gives, every device-side weight on the exporter's int8 grid
(``--int8-aware``), and a decoder of at least 64 hidden channels once it stands in for a stage.
A shape fits when its int8 encoder file is at most the budget (`--device-budget`, else the
export's bar of 64 KiB, `export.verify.BARS`) and, for a board, when `snn mcu report` says its
flash and peak SRAM fit that board. Sizes are measured, not estimated: each candidate's device
half is exported through the same pipeline as `snn export` (`build_encoders`) with its initial
weights (the file's size depends on the graph, not on the values; `METADATA_MARGIN` bytes are kept
free for the trained file's metadata). Flags the user gave
(``--split``, ``--enc-hidden``, ...) are kept fixed in every candidate.

For the shipped Fashion-MNIST ResNet-14 and the 64 KiB bar this is the shipped shape: split
``layer2``, decode to ``layer3``, stride 2, encoder hidden 16, decoder hidden 64 (63,680 B).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn.errors import SnnError

SHAPE_FLAGS = ("split", "decode_to", "enc_stride", "enc_kernel", "enc_hidden", "dec_hidden")
# the trained file differs from its untrained probe only in metadata (bundle name, class names,
# the learned centres' digits): this much is kept free for it
METADATA_MARGIN = 256
HIDDEN_STEPS = (32, 16, 8)
STANDIN_DEC_HIDDEN = 64     # a decoder that also stands in for backbone stages (codec/zoo/TRAINING.md)


@dataclass(frozen=True)
class DeviceShape:
    """One candidate: the `snn train codec` shape flags."""

    split: str
    decode_to: str
    enc_stride: int
    enc_kernel: int
    enc_hidden: int
    dec_hidden: int

    def flags(self) -> str:
        return (f"--split {self.split} --decode-to {self.decode_to} --enc-stride {self.enc_stride} "
                f"--enc-kernel {self.enc_kernel} --enc-hidden {self.enc_hidden} --dec-hidden {self.dec_hidden} "
                f"--int8-aware")


def export_bar() -> int:
    from export.verify import BARS
    return int(BARS["int8_bytes_max"])


def candidates(backbone, input_shape: tuple[int, int, int], base: dict, fixed: set[str]) -> list[DeviceShape]:
    """The shapes to try, best first (module docstring). `base` holds the shape flags' current
    values (None for split/decode_to: the backbone's); names in `fixed` are not varied."""
    points = list(backbone.split_points)
    own_split, own_resume = backbone.split, backbone.resume
    first = base.get("split") or own_split
    resume = base.get("decode_to") or own_resume     # the features the decoder reconstructs, for every split
    if "split" in fixed:
        splits = [first]
    else:
        splits = [points[i] for i in range(points.index(first), -1, -1)]
    backbone.set_split(first, resume)
    target = _grid(backbone.split_shape(input_shape), int(base["enc_stride"]))
    out: list[DeviceShape] = []
    for split in splits:
        try:
            backbone.set_split(split, resume)
        except ValueError:
            continue
        c, h, w = backbone.split_shape(input_shape)
        stride = int(base["enc_stride"]) if "enc_stride" in fixed else _stride_for(h, w, target)
        if stride is None:
            continue
        kernel = int(base["enc_kernel"]) if "enc_kernel" in fixed or stride <= 2 else max(int(base["enc_kernel"]), 5)
        widths = [int(base["enc_hidden"])] if "enc_hidden" in fixed else \
            sorted({int(base["enc_hidden"]), *[x for x in HIDDEN_STEPS if x < int(base["enc_hidden"])]}, reverse=True)
        dec = int(base["dec_hidden"])
        if split != resume and "dec_hidden" not in fixed:
            dec = max(dec, STANDIN_DEC_HIDDEN)
        for hidden in widths:
            out.append(DeviceShape(split, resume, stride, kernel, hidden, dec))
    backbone.set_split(own_split, own_resume)
    return out


def _grid(shape: tuple[int, int, int], stride: int) -> tuple[int, int]:
    _, h, w = shape
    return -(-h // stride), -(-w // stride)


def _stride_for(h: int, w: int, target: tuple[int, int]) -> int | None:
    """The encoder stride that maps (h, w) onto the target symbol grid, if one does."""
    for stride in (1, 2, 4, 8):
        if _grid((0, h, w), stride) == target:
            return stride
    return None


class _Probe:
    """What `export.pipeline.build_encoders` needs of a bundle, around an untrained candidate."""

    def __init__(self, backbone, codec, record: dict):
        from codec.wire.packing import bits_per_symbol

        self.backbone, self.codec = backbone, codec
        self.name = "device-fit-probe"
        self.input_shape = tuple(record["input_shape"])
        self.input_mean, self.input_std = record["input_mean"], record["input_std"]
        self.levels = int(codec.config["levels"])
        self.bits_per_symbol = bits_per_symbol(self.levels)
        self.gray = True
        self.symbol_shape, self.n_symbols = codec.symbol_shape, codec.n_symbols
        self.centers = codec.quantizer.centres().detach().cpu().numpy().astype(np.float32)
        self.classes = [str(c) for c in record.get("classes") or range(int(record["kwargs"].get("n_classes", 10)))]
        self.fingerprint = bytes(4)

    def device_half(self):
        from codec.model.semantic_codec import DeviceHalf, Normalise
        return DeviceHalf(Normalise(self.input_mean, self.input_std), self.backbone, self.codec).eval()


def measure(backbone, record: dict, shape: DeviceShape, levels: int, channels: int, board=None,
            limit: int | None = None) -> dict:
    """The int8 encoder of `shape` exported as `snn export` would (8- and 16-bit activations; the
    larger counts), and with a board its `snn mcu report` verdict (when the size is within `limit`)."""
    import contextlib
    import io

    from codec.model.semantic_codec import SemanticCodec
    from export.pipeline import build_encoders

    backbone.set_split(shape.split, shape.decode_to)
    input_shape = tuple(record["input_shape"])
    out_shape = backbone.resume_shape(input_shape) if shape.decode_to != shape.split else None
    try:
        codec = SemanticCodec(backbone.split_shape(input_shape), levels=levels, channels=channels,
                              enc_kernel=shape.enc_kernel, enc_stride=shape.enc_stride, enc_hidden=shape.enc_hidden,
                              dec_hidden=shape.dec_hidden, out_shape=out_shape).eval()
    except ValueError as exc:
        return {"shape": shape, "error": str(exc), "fits": False}
    h, w, c = input_shape[1], input_shape[2], input_shape[0]
    cal = np.random.default_rng(0).integers(0, 256, (8, h, w, c), dtype=np.uint8)
    probe = _Probe(backbone, codec, record)
    sizes, report = {}, None
    with tempfile.TemporaryDirectory(prefix="snn-fit-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        for bits in ("8", "16"):
            _, int8_path, _ = build_encoders(probe, Path(tmp) / bits, cal, method="minmax", activations=bits,
                                             log=lambda _m: None)
            sizes[bits] = os.path.getsize(int8_path)
            within = limit is None or max(sizes.values()) + METADATA_MARGIN <= limit
            if board is not None and bits == "16" and within:
                from firmware_sim.report import mcu_report
                report = mcu_report(str(int8_path), board)
    result = {"shape": shape, "int8_bytes": max(sizes.values()), "n_symbols": int(codec.n_symbols)}
    if report is not None:
        result.update(board_fits=bool(report["fits"]), flash_bytes=int(report["flash_bytes"]),
                      peak_sram_bytes=int(report["peak_sram_bytes"]))
    return result


def fit_device(backbone, record: dict, base: dict, fixed: set[str], *, levels: int, channels: int,
               budget: int | None = None, board: str | None = None, log=print) -> tuple[DeviceShape, dict, list]:
    """The first candidate that fits (module docstring): (shape, its measurement, every measurement
    tried). SnnError when none does."""
    board_obj = None
    if board is not None:
        from firmware_sim.boards import load_board
        board_obj = load_board(board)
    limit = int(budget) if budget is not None else export_bar()
    tried = []
    own = backbone.split, backbone.resume
    try:
        return _first_fit(backbone, record, base, fixed, levels, channels, limit, board_obj, tried, log)
    finally:
        backbone.set_split(*own)


def _first_fit(backbone, record, base, fixed, levels, channels, limit, board_obj, tried, log):
    for shape in candidates(backbone, tuple(record["input_shape"]), base, fixed):
        m = measure(backbone, record, shape, levels, channels, board_obj, limit)
        tried.append(m)
        if "error" in m:
            continue
        m["fits"] = m["int8_bytes"] + METADATA_MARGIN <= limit and m.get("board_fits", True)
        log(f"  {shape.split:>8} -> {shape.decode_to:<8} stride {shape.enc_stride} enc-hidden {shape.enc_hidden:>2}"
            f" dec-hidden {shape.dec_hidden}: int8 encoder {m['int8_bytes']:,} B"
            + (f", {board_obj.name} flash {m['flash_bytes']:,} B / SRAM {m['peak_sram_bytes']:,} B"
               f" {'fits' if m['board_fits'] else 'does not fit'}" if "board_fits" in m else "")
            + ("  <- fits" if m["fits"] else ""))
        if m["fits"]:
            return shape, m, tried
    where = f"{board_obj.name} and {limit:,} B" if board_obj else f"{limit:,} B"
    smallest = min((m for m in tried if "int8_bytes" in m), key=lambda m: m["int8_bytes"], default=None)
    raise SnnError(f"no device shape of this backbone fits {where}"
                   + (f" (the smallest tried, {smallest['shape'].flags()}, is {smallest['int8_bytes']:,} B)"
                      if smallest else "") + ": train a narrower backbone (--width) or raise --device-budget")


def fit_recipe(recipe, log=print):
    """`CodecRecipe` with `board`/`device_budget` -> the same recipe with the first shape that fits
    (int8-aware), keeping the shape fields the caller set away from their defaults. The recipe
    unchanged when it names neither."""
    import dataclasses

    from codec.training.train_backbone import load_backbone_file

    if not recipe.board and recipe.device_budget is None:
        return recipe
    defaults = {f.name: f.default for f in dataclasses.fields(recipe)}
    fixed = {name for name in SHAPE_FLAGS if getattr(recipe, name) != defaults[name]}
    base = {name: getattr(recipe, name) for name in SHAPE_FLAGS}
    backbone, record = load_backbone_file(recipe.backbone)
    target = recipe.board or f"{recipe.device_budget:,} B"
    log(f"fitting the device to {target}: trying shapes of {record.get('arch', 'the backbone')}"
        + (f" (kept as given: {', '.join('--' + f.replace('_', '-') for f in sorted(fixed))})" if fixed else ""))
    shape, m, _ = fit_device(backbone, record, base, fixed, levels=recipe.levels, channels=recipe.channels,
                             budget=recipe.device_budget, board=recipe.board, log=log)
    log(f"device shape for {target}: {shape.flags()} (int8 encoder {m['int8_bytes']:,} B, "
        f"{m['n_symbols']} symbols)")
    return recipe.replace(int8_aware=True, **{name: getattr(shape, name) for name in SHAPE_FLAGS})


def boards_fitting(int8_path: str | Path) -> dict[str, bool]:
    """Board name -> whether this exported int8 encoder fits it (size at most the export bar and
    `snn mcu report` fits), for every board `snn mcu report` knows."""
    from firmware_sim.boards import board_names, load_board
    from firmware_sim.report import mcu_report

    size_ok = os.path.getsize(int8_path) <= export_bar()
    out = {}
    for name in board_names():
        try:
            out[name] = size_ok and bool(mcu_report(str(int8_path), load_board(name))["fits"])
        except SnnError:
            out[name] = False
    return out
