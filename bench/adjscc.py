"""An ADJSCC-style baseline codec: attention-feature (AF) modules fed the channel quality at both ends.

After Xu, Ai, Chen, Yang, Sun and Rodrigues, "Wireless Image Transmission Using Deep Source Channel
Coding With Attention Modules", IEEE TCSVT 2021 (arXiv:2012.00533; the authors' code is
github.com/alexxu1988/ADJSCC). What we follow from it:

- **One network for every channel state**: each encoder and decoder stage is conv -> GDN (IGDN at
  the decoder) -> PReLU -> AF module, and the AF module is the paper's: *context extraction*
  (global average pooling of the stage's features, concatenated with the channel quality),
  *factor prediction* (two fully connected layers, ReLU then sigmoid, one factor per channel) and
  *feature recalibration* (the features times the factors); `codec.model.decoder.AFBlock` is that
  block. The encoder's last layer is conv -> GDN with no activation and no AF module, then per-image
  power normalisation, as the paper's en5.
- **The transmitter knows the channel too**: the paper feeds the SNR to the encoder's AF modules as
  well as the decoder's (it assumes channel-state feedback). Here the device encoder is given the
  BER of the link (in `snn bench accuracy`, the channel's BER: what feedback from the edge's per-frame
  estimate converges to) and the edge decoder the BER its header decoding measured. SemanticNN's
  device needs no such feedback; this baseline gets it for free, which favours it.
- **Channel quality = BER, as the research code adapts ADJSCC** (SemanticNN's `models/DeepSC.py`
  puts AF modules on both sides of its bit channel): the AF input is
  `codec.model.decoder.ber_condition`, (log10(max(BER, 1e-5)) + 3) / 2.

What differs from the paper, to sit in this system: the input is the backbone's split features, not
pixels (so 5x5 kernels throughout instead of a 9x9 first layer, and the first encoder conv has the
stride that gives the bundle's symbol map); the channel symbols are quantised to the bundle's L = 8
learned, sorted centres (3 bits, Gray codes) instead of being sent as analogue values, so they are
packed into the same 37-byte payload and the same v2 frames as SemanticNN's, and cross the same bit
flips; the decoder also gets the erasure mask of lost fragments (as SemanticNN's does) and ends in a
1x1 conv to the features the bundle's decoder reconstructs (features, not an image: no sigmoid).
Widths are this budget's, not the paper's 256: encoder 16 channels (the shipped encoder's width),
decoder 48. Stride-1 decoder stages are direct convs (a stride-1 transposed conv is a conv).

Training is SemanticNN's own recipe on the same bit flips (`snn train codec` without --xai): per image
a BER log-uniform in [1e-4, 0.2] with 15 % clean images, real Gray-coded flips of the symbol codes
(`codec.training.channel_sim`), 5 % of images losing a fragment; stage 1 denoising MSE to the features,
stage 2 cross-entropy + distillation (T = 2) + 0.1 MSE + centre usage; AdamW, cosine schedule; the
epoch kept is the best on a held-out split of the training set (mean accuracy at BER 0, 1e-2, 1e-1).
The bundle's backbone is frozen, so its split features are computed once.

    python -m bench.adjscc [--bundle B] [--epochs 12] [--count N] [--minutes 40] [-o bench/zoo/adjscc_fmnist.pt]

writes the checkpoint the benchmark uses (weights in float16, centres in float32: about 0.3 MB);
the exact command, seed, time and clean test accuracy of the stored weights are in it and in the JSON
beside it. It is read back with `torch.load(weights_only=True)` only: tensors and plain data.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec.model.decoder import AFBlock, ber_condition
from codec.model.encoder import power_normalise
from codec.model.gdn import GDN
from codec.model.quantizer import SoftQuantizer

DEFAULT_PATH = Path(__file__).resolve().parent / "zoo" / "adjscc_fmnist.pt"
FORMAT = "snn-bench-adjscc"
KERNEL = 5


class AFStage(nn.Module):
    """conv (transposed when upsampling) -> GDN / IGDN -> PReLU -> AF(channel quality)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, inverse: bool = False, kernel: int = KERNEL):
        super().__init__()
        pad = kernel // 2
        if inverse and stride > 1:
            self.conv = nn.ConvTranspose2d(cin, cout, kernel, stride, pad, output_padding=stride - 1)
        else:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, pad)
        self.gdn = GDN(cout, inverse=inverse)
        self.act = nn.PReLU(cout)
        self.af = AFBlock(cout)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.af(self.act(self.gdn(self.conv(x))), cond)


class ADJSCCEncoder(nn.Module):
    """(split features, BER) -> unit-power continuous symbols (N, C_b, h, w)."""

    def __init__(self, in_channels: int, channels: int, hidden: int, stride: int, stages: int = 2):
        super().__init__()
        self.stages = nn.ModuleList([AFStage(in_channels if i == 0 else hidden, hidden, stride if i == 0 else 1)
                                     for i in range(stages)])
        self.last = nn.Conv2d(hidden, channels, KERNEL, 1, KERNEL // 2)
        self.last_gdn = GDN(channels)

    def forward(self, f: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        cond = ber_condition(ber)
        for stage in self.stages:
            f = stage(f, cond)
        return power_normalise(self.last_gdn(self.last(f)))


class ADJSCCDecoder(nn.Module):
    """(symbol values with erased ones zeroed, presence mask, BER) -> the features the bundle's decoder
    reconstructs."""

    def __init__(self, channels: int, out_channels: int, hidden: int, stride: int, stages: int = 3):
        super().__init__()
        self.stages = nn.ModuleList([AFStage(2 * channels if i == 0 else hidden, hidden, stride if i == 0 else 1,
                                             inverse=True) for i in range(stages)])
        self.out = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, values: torch.Tensor, present: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        cond = ber_condition(ber)
        x = torch.cat([values * present, present], dim=1)
        for stage in self.stages:
            x = stage(x, cond)
        return self.out(x)


class ADJSCCCodec(nn.Module):
    """Encoder + the bundle's kind of soft quantizer + decoder, shaped to the bundle's symbol map."""

    def __init__(self, split_shape, out_shape, symbol_shape, levels: int = 8, gray: bool = True,
                 enc_hidden: int = 16, dec_hidden: int = 48, enc_stages: int = 2, dec_stages: int = 3,
                 sigma: float = 10.0):
        super().__init__()
        c, h, _ = (int(v) for v in split_shape)
        oc, oh, _ = (int(v) for v in out_shape)
        sc, sh, sw = (int(v) for v in symbol_shape)
        if h % sh or oh % sh:
            raise ValueError(f"ADJSCC needs a symbol map that divides the features: {split_shape} -> {symbol_shape} "
                             f"-> {out_shape}")
        self.config = {"split_shape": [c, h, int(split_shape[2])], "out_shape": [oc, oh, int(out_shape[2])],
                       "symbol_shape": [sc, sh, sw], "levels": levels, "gray": gray, "enc_hidden": enc_hidden,
                       "dec_hidden": dec_hidden, "enc_stages": enc_stages, "dec_stages": dec_stages, "sigma": sigma,
                       "ber_conditioning": True, "device_ber": True}
        self.encoder = ADJSCCEncoder(c, sc, enc_hidden, h // sh, enc_stages)
        self.quantizer = SoftQuantizer(levels, sigma)
        self.decoder = ADJSCCDecoder(sc, oc, dec_hidden, oh // sh, dec_stages)
        self.symbol_shape = (sc, sh, sw)
        self.n_symbols = sc * sh * sw
        self.demapper = None  # read by codec.model.semantic_codec.EdgeHalf: hard centres

    @classmethod
    def from_config(cls, config: dict) -> "ADJSCCCodec":
        cfg = {k: v for k, v in config.items() if k not in ("ber_conditioning", "device_ber")}
        return cls(cfg.pop("split_shape"), cfg.pop("out_shape"), cfg.pop("symbol_shape"), **cfg)

    def decode(self, values: torch.Tensor, present: torch.Tensor, ber: torch.Tensor) -> torch.Tensor:
        """(N, S) values and presence -> features; the interface `EdgeHalf` calls."""
        n = values.shape[0]
        v = values.reshape(n, *self.symbol_shape)
        p = present.reshape(n, *self.symbol_shape).to(values.dtype)
        return self.decoder(v, p, ber.to(torch.float32))


class DeviceHalf(nn.Module):
    """images in [0, 1] -> symbol indices (N, S), at the BER the device was told."""

    def __init__(self, normalise, backbone, codec: ADJSCCCodec, ber: float):
        super().__init__()
        self.normalise, self.backbone = normalise, backbone
        self.encoder, self.quantizer = codec.encoder, codec.quantizer
        self.ber = float(ber)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f = self.backbone.head(self.normalise(images))
        z = self.encoder(f, torch.full((len(images),), self.ber))
        return self.quantizer.assign(z).reshape(len(images), -1)


class ADJSCCBaseline:
    """Bundle-like wrapper: device/edge halves and the attributes `bench.accuracy` reads.

    `device_knows_ber` tells the benchmark that the device half depends on the link's BER, so its
    symbols are computed per channel setting (`device_half(ber=...)`)."""

    device_knows_ber = True

    def __init__(self, codec: ADJSCCCodec, bundle, record: dict | None = None):
        self.codec = codec.eval()
        self.bundle = bundle
        self.backbone = bundle.backbone
        self.normalise = bundle.normalise
        self.levels = int(codec.config["levels"])
        self.gray = bool(codec.config["gray"])
        self.n_symbols = int(codec.n_symbols)
        self.config = dict(codec.config)
        self.record = record or {}

    def device_half(self, ber: float = 0.0) -> DeviceHalf:
        return DeviceHalf(self.normalise, self.backbone, self.codec, ber).eval()

    def edge_half(self):
        from codec.model.semantic_codec import EdgeHalf
        return EdgeHalf(self.backbone, self.codec).eval()


def adjscc_for(bundle, **kw) -> ADJSCCCodec:
    """A fresh ADJSCC codec with the bundle's split, symbol map, levels, codes and decoder target."""
    sem = bundle.codec
    cfg = sem.config
    if float(cfg.get("crop", 1.0)) != 1.0:
        raise ValueError("ADJSCC is built for bundles that send the whole symbol map (crop 1.0)")
    return ADJSCCCodec(cfg["split_shape"], sem.out_shape, sem.symbol_shape, levels=int(cfg["levels"]),
                       gray=bool(cfg.get("gray", True)), sigma=float(cfg.get("sigma", 10.0)), **kw)


# --------------------------------------------------------------------------- training

class _Forward:
    """One pass through the training channel: encoder at each image's BER, bit flips, erasures, decoder."""

    def __init__(self, codec: ADJSCCCodec, ber_min: float, ber_max: float, clean_share: float, erasure_prob: float):
        from codec.training.channel_sim import SymbolChannel
        self.codec = codec
        self.channel = SymbolChannel(codec.config["levels"], gray=codec.config["gray"])
        self.ber_min, self.ber_max, self.clean_share, self.erasure_prob = ber_min, ber_max, clean_share, erasure_prob

    def __call__(self, f: torch.Tensor, g: torch.Generator, ber: torch.Tensor | None = None,
                 erasure_prob: float | None = None):
        from codec.training.channel_sim import sample_ber, sample_erasures
        n = len(f)
        if ber is None:
            ber = sample_ber(n, self.ber_min, self.ber_max, self.clean_share, g)
        z = self.codec.encoder(f, ber).reshape(n, -1)
        erased = sample_erasures(n, z.shape[1], self.erasure_prob if erasure_prob is None else erasure_prob, g)
        rx = self.channel.flip(self.codec.quantizer.assign(z.detach()), ber, g)
        values, _, w = self.codec.quantizer(z, received=rx)
        return self.codec.decode(values, (~erased).to(torch.float32), ber), w


@torch.no_grad()
def _channel_accuracy(fwd: _Forward, tail, f: torch.Tensor, y: torch.Tensor, bers) -> dict:
    """Top-1 through the training channel at each BER (fixed channel seed): model selection."""
    out = {}
    for b in bers:
        g = torch.Generator().manual_seed(1234)
        pred = torch.cat([tail(fwd(f[i:i + 1000], g, torch.full((len(f[i:i + 1000]),), b), 0.0)[0]).argmax(1)
                          for i in range(0, len(f), 1000)])
        out[b] = float((pred == y).float().mean())
    return out


def _stored(state: dict) -> dict:
    """The state as written: floating tensors in float16, except the quantizer's centres (float32)."""
    return {k: (v.half() if v.is_floating_point() and not k.startswith("quantizer.") else v).clone()
            for k, v in state.items()}


@torch.inference_mode()
def clean_accuracy(wrapped: ADJSCCBaseline, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 on a clean link (BER 0 at both ends, no erasures)."""
    from codec.training.common import to_tensor
    dev, edge = wrapped.device_half(0.0), wrapped.edge_half()
    right = 0
    for i in range(0, len(images), batch_size):
        s = dev(to_tensor(images[i:i + batch_size]))
        pred = edge(s, torch.zeros(s.shape, dtype=torch.bool), torch.zeros(len(s))).argmax(1).numpy()
        right += int((pred == labels[i:i + batch_size]).sum())
    return right / max(1, len(images))


def train_adjscc(bundle, out: Path = DEFAULT_PATH, epochs: int = 12, stage1_epochs: int = 1, minutes: float = 40.0,
                 batch_size: int = 128, lr: float = 3e-3, seed: int = 0, count: int | None = None,
                 val_count: int = 2000, eval_count: int | None = None, threads: int | None = None,
                 command: str | None = None, log=None) -> dict:
    """Train an ADJSCC-style codec for `bundle` (its backbone frozen) and write it to `out`."""
    from codec.datasets import load_dataset
    from codec.model.quantizer import usage_loss
    from codec.training.common import log as default_log, seed_everything, set_threads, split_validation, to_tensor
    from codec.training.train_backbone import VAL_SEED
    from codec.training.train_codec import MSE_WEIGHT_STAGE2, SELECT_BERS, WEIGHT_DECAY, _kd

    log = log or default_log
    set_threads(threads)
    g = seed_everything(seed)
    # the validation split the bundle's backbone and codec held out (never the test set)
    train_set, val_set = split_validation(load_dataset("fmnist:train"), seed=VAL_SEED)
    train_set, val_set = train_set.take(count), val_set.take(val_count)
    test = load_dataset("fmnist:test").take(eval_count)
    codec = adjscc_for(bundle)
    backbone, norm = bundle.backbone.eval(), bundle.normalise
    for p in backbone.parameters():
        p.requires_grad_(False)
    t0 = time.time()

    def features(images: np.ndarray):
        x = to_tensor(images)
        with torch.no_grad():  # the device head is frozen: split features, decoder targets, teacher logits once
            f = torch.cat([backbone.head(norm(x[i:i + 500])) for i in range(0, len(x), 500)])
            t = torch.cat([backbone.bridge(f[i:i + 500]) for i in range(0, len(f), 500)])
            return f, t, torch.cat([backbone.tail(t[i:i + 500]) for i in range(0, len(t), 500)])

    feats, targets, teachers = features(train_set.images)
    f_val = features(val_set.images)[0]
    y_tr = torch.from_numpy(train_set.labels.astype(np.int64))
    y_val = torch.from_numpy(val_set.labels.astype(np.int64))
    n, val_count = len(y_tr), len(y_val)
    fvar = float(targets.var())
    log(f"adjscc: split features of {n} training + {val_count} validation images in {time.time() - t0:.0f}s; "
        f"{codec.n_symbols} symbols x {math.ceil(math.log2(codec.config['levels']))} bits")
    fwd = _Forward(codec, 1e-4, 0.2, 0.15, 0.05)
    steps = math.ceil(n / batch_size)
    best = {"score": -1.0, "epoch": 0, "state": None}
    stopped, done = False, 0
    for stage, stage_epochs in ((1, stage1_epochs), (2, epochs)):
        if stage_epochs <= 0 or stopped:
            continue
        opt = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
        total = stage_epochs * steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i, total=total: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
        for e in range(stage_epochs):
            codec.train()
            te, tl = time.time(), 0.0
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                dec, w = fwd(feats[idx], g)
                mse = F.mse_loss(dec, targets[idx]) / fvar
                loss = mse + 0.02 * usage_loss(w)
                if stage == 2:
                    logits = backbone.tail(dec)
                    loss = (F.cross_entropy(logits, y_tr[idx]) + _kd(logits, teachers[idx]) + MSE_WEIGHT_STAGE2 * mse
                            + 0.02 * usage_loss(w))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tl += float(loss.detach()) * len(idx)
                if time.time() - t0 > minutes * 60:
                    stopped = True
                    break
            done += 1
            codec.eval()
            accs = _channel_accuracy(fwd, backbone.tail, f_val, y_val, SELECT_BERS)
            score = sum(accs.values()) / len(accs)
            if stage == 2 and score >= best["score"]:
                best = {"score": score, "epoch": done, "state": {k: v.detach().clone() for k, v in codec.state_dict().items()}}
            log(f"adjscc stage {stage} epoch {e + 1}/{stage_epochs} loss {tl / n:.4f} | val acc "
                + " ".join(f"ber{b:g} {a:.4f}" for b, a in accs.items()) + f" | {time.time() - te:.0f}s")
            if stopped:
                log(f"adjscc: time budget of {minutes:g} min reached in epoch {done}")
                break
    if best["state"] is not None:
        codec.load_state_dict(best["state"])
    codec.quantizer.freeze()
    state = _stored(codec.state_dict())
    codec.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    codec.quantizer.freeze()
    wrapped = ADJSCCBaseline(codec, bundle)
    acc = clean_accuracy(wrapped, test.images, test.labels)
    train_seconds = round(time.time() - t0, 1)
    record = {"format": FORMAT, "config": codec.config, "state_dict": _stored(codec.state_dict()),
              "bundle_fingerprint": bundle.fingerprint.hex(), "train_images": n, "val_images": val_count,
              "clean_test_images": len(test.labels), "clean_test_accuracy": acc, "stage1_epochs": stage1_epochs,
              "stage2_epochs": epochs, "epochs_run": done, "best_epoch": best["epoch"],
              "val_score": round(best["score"], 6), "stopped_by_time_budget": stopped, "seed": seed,
              "train_seconds": train_seconds, "command": command,
              "loss": "stage 1 MSE; stage 2 CE + KD(T=2) + 0.1 MSE + 0.02 usage; training BER log-uniform 1e-4..0.2, "
                      "15% clean, 5% fragment erasures, Gray bit flips"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(record, tmp)
    tmp.replace(out)
    meta = {k: v for k, v in record.items() if k != "state_dict"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"saved ADJSCC-style codec to {out} ({out.stat().st_size} B): clean test accuracy {acc:.4f} "
        f"on {len(test.labels)} images, {train_seconds:.0f}s")
    return meta


def load_adjscc(path: str | Path, bundle) -> ADJSCCBaseline:
    """Read a checkpoint written by `train_adjscc` for `bundle` (tensors and plain data only)."""
    from bench.baseline_file import read_record
    from snn.errors import BundleError

    record = read_record(path, bundle, FORMAT, "an ADJSCC-style codec", "bench.adjscc")
    try:
        codec = ADJSCCCodec.from_config(record["config"])
        codec.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: its ADJSCC config or weights do not fit together ({exc})") from None
    codec.quantizer.freeze()
    return ADJSCCBaseline(codec, bundle, {k: v for k, v in record.items() if k != "state_dict"})


# the names `bench.accuracy` looks up in every baseline module
load = load_adjscc


def train(bundle, out: Path, minutes: float, command: str | None = None) -> dict:
    return train_adjscc(bundle, out, minutes=minutes, command=command)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adjscc", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=None, help="the SemanticNN bundle to match (default: shipped)")
    p.add_argument("-o", "--out", type=Path, default=DEFAULT_PATH)
    p.add_argument("--epochs", type=int, default=12, help="stage-2 epochs (default 12)")
    p.add_argument("--stage1-epochs", type=int, default=1)
    p.add_argument("--minutes", type=float, default=40.0, help="stop training after this long")
    p.add_argument("--count", type=int, default=None,
                   help="training images (default: all 55,000 outside the 5,000 validation images the bundle held "
                        "out; 2,000 of those pick the epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from codec.bundle import load_bundle
    bundle = load_bundle(args.bundle)
    command = "python -m bench.adjscc " + shlex.join(sys.argv[1:] if argv is None else argv)
    train_adjscc(bundle, args.out, epochs=args.epochs, stage1_epochs=args.stage1_epochs, minutes=args.minutes,
                 seed=args.seed, count=args.count, threads=args.threads, command=command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
