"""The codec training recipe: every choice `train_codec` makes, as one validated dataclass.

`snn train codec` builds it from its flags (one flag per field, the field's default is the
flag's default: `snn.options`); Python callers build it directly:

    recipe = CodecRecipe(backbone=Path("backbone.pt"), out=Path("codec.snn"), xai=True)
    train_codec(recipe, command="...", make_errors=make_error_model)

A recipe that cannot train (a BER range outside (0, 0.5], a share outside [0, 1], a count
below 1, ...) is refused at construction with an SnnError naming the flag. `board` and
`device_budget` are applied before training by `export.device_fit.fit_recipe`, which returns the
recipe with the shape that fits (`snn train codec` calls it before any rank starts).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from snn.errors import SnnError

STAGE1_STEPS = 400         # default schedule in optimisation steps (epochs derived per data set) ...
STAGE2_STEPS = 1400        # (the minimum epochs are in codec.training.train_codec)


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class CodecRecipe:
    """What `snn train codec` trains: the backbone, the codec's shape, the schedule and the
    channel the codec is trained under (see codec/training/train_codec.py for the method)."""

    backbone: Path = field(metadata={"help": "the trained backbone (snn train backbone -o FILE), or a bundle",
                                     "required": True})
    out: Path = field(metadata={"help": "the bundle to write (.snn)", "required": True})
    data: str | None = _opt(None, "data set spec (fmnist, cifar10:PATH, folder:PATH); training reads its :train "
                                  "split and scores its :test split (:val where a tree has no test/) (default: "
                                  "the backbone's data set)")
    split: str | None = _opt(None, "last stage on the device (default: the backbone's split)")
    decode_to: str | None = _opt(None, "stage whose output the decoder reconstructs; the edge runs only the stages "
                                       "after it (default: the split stage)")
    levels: int = _opt(8, "quantization centres L (default 8 = 3 bits)")
    channels: int = _opt(2, "symbol channels C_b")
    enc_kernel: int = _opt(3, "encoder kernel size")
    enc_stride: int = _opt(1, "encoder stride")
    enc_hidden: int = _opt(32, "encoder hidden channels")
    dec_hidden: int = _opt(48, "decoder hidden channels")
    usage_weight: float = _opt(0.02, "centre-usage loss weight")
    int8_aware: bool = _opt(False, "device-side weights on the int8 grid 'snn export' uses (backbone head snapped, "
                                   "encoder trained through it), so the int8 encoder picks the symbols torch picks")
    crop: float = _opt(1.0, "spatial crop ratio: send a centred sub-window")
    stage1_steps: int = _opt(STAGE1_STEPS, "stage-1 optimisation steps; the epochs are derived from the data size, "
                                           "at least 2 (default %(default)s)")
    stage2_steps: int = _opt(STAGE2_STEPS, "stage-2 optimisation steps; the epochs are derived from the data size, "
                                           "at least 14 (default %(default)s)")
    stage1_epochs: int | None = _opt(None, "override --stage1-steps with an epoch count (default: derived from the "
                                           "steps)")
    stage2_epochs: int | None = _opt(None, "override --stage2-steps with an epoch count (default: derived from the "
                                           "steps)")
    finetune_head: bool = _opt(False, "stage 2 also trains the device-side backbone stages (int8-aware with "
                                      "--int8-aware), distilled from the frozen original backbone")
    head_lr: float = _opt(1e-4, "learning rate of --finetune-head (default 1e-4)")
    init: Path | None = _opt(None, "start from this bundle's codec (e.g. to fine-tune it with --finetune-head); "
                                   "--backbone may name a bundle too (default: a new codec)", metavar="BUNDLE")
    batch_size: int = _opt(256, "batch size (the global batch under --nproc)")
    lr: float = _opt(3e-3, "learning rate of the codec (AdamW, cosine schedule)")
    ber_min: float = _opt(1e-4, "lowest training BER (drawn log-uniformly per image)")
    ber_max: float = _opt(0.2, "highest training BER")
    clean_share: float = _opt(0.15, "share of clean (BER 0) samples")
    erasure_prob: float = _opt(0.05, "per-image chance of a lost fragment")
    xai: bool = _opt(False, "add the IG asymmetry-compensation loss (captum)")
    xai_weight: float = _opt(0.1, "weight of the --xai loss")
    xai_every: int = _opt(8, "compute IG on every k-th batch")
    ber_conditioning: bool = _opt(False, "condition the decoder's attention blocks on the frame's BER (the research "
                                         "method; off by default since it measured no gain: codec/zoo/TRAINING.md, "
                                         "ablations)")
    binary: bool = _opt(False, "ablation: natural binary codes instead of Gray")
    soft_demapper: bool = _opt(False, "the edge reads each received symbol as its MMSE centre given the frame's BER "
                                      "(posterior over the centres its bits may have been sent as) instead of its "
                                      "centre")
    seed: int = _opt(0, "seed of the run (data order, channel draws, initialisation)")
    threads: int | None = _opt(None, "CPU threads (default: torch's choice)")
    count: int | None = _opt(None, "use only the first N train/test images (default: all)")
    resume: bool = _opt(False, "continue from OUT.ckpt")
    device: str = _opt("auto", "auto (CUDA when present), cpu or cuda (default auto)")
    holdout: float | None = _opt(None, "folder:PATH as one tree: hold this fraction of each class out as the test "
                                       "split (default: the split the backbone was trained with)", metavar="F")
    split_seed: int = _opt(0, "seed of the --holdout split (default 0)")
    board: str | None = _opt(None, "choose the split and encoder shape (--split, --decode-to, --enc-stride, "
                                   "--enc-hidden, --dec-hidden, --int8-aware) whose int8 encoder fits this board by "
                                   "'snn mcu report' and the export's 64 KiB bar, e.g. stm32f411 ('snn mcu boards' "
                                   "lists them); shape flags you give stay fixed (default: no board, the shape "
                                   "flags as given)", metavar="NAME")
    device_budget: int | None = _opt(None, "as --board, for an int8 encoder file of at most BYTES (default: no "
                                           "budget; with --board, the export's 65536)", metavar="BYTES")

    def __post_init__(self) -> None:
        for name in ("backbone", "out", "init"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        self._check()

    def _check(self) -> None:
        def refuse(name: str, what: str) -> None:
            raise SnnError(f"--{name.replace('_', '-')} {what}, got {getattr(self, name)!r}")

        for name in ("levels", "channels", "enc_kernel", "enc_stride", "enc_hidden", "dec_hidden", "batch_size",
                     "xai_every", "stage1_steps", "stage2_steps"):
            if getattr(self, name) < 1:
                refuse(name, "must be at least 1")
        for name in ("count", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                refuse(name, "must be at least 1 when given")
        for name in ("stage1_epochs", "stage2_epochs"):   # 0: skip that stage
            if getattr(self, name) is not None and getattr(self, name) < 0:
                refuse(name, "must not be negative")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                refuse(name, "must be positive")
        for name in ("usage_weight", "xai_weight"):
            if not getattr(self, name) >= 0:
                refuse(name, "must not be negative")
        if not 0 < self.ber_min <= 0.5:
            refuse("ber_min", "must lie in (0, 0.5] (BERs are drawn log-uniformly)")
        if not self.ber_min <= self.ber_max <= 0.5:
            refuse("ber_max", f"must lie in [--ber-min {self.ber_min:g}, 0.5]")
        for name in ("clean_share", "erasure_prob"):
            if not 0 <= getattr(self, name) <= 1:
                refuse(name, "must lie in [0, 1]")
        if not 0 < self.crop <= 1:
            refuse("crop", "must lie in (0, 1]")
        if self.holdout is not None and not 0 < self.holdout < 1:
            refuse("holdout", "must lie strictly between 0 and 1")
        if self.device_budget is not None and self.device_budget < 1:
            refuse("device_budget", "must be a positive number of bytes")

    def replace(self, **changes) -> "CodecRecipe":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
