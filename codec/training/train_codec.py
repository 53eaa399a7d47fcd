"""`snn train codec`: two-stage feature-augmentation training of the codec on a frozen backbone.

- The backbone is frozen and rounded to float16 first (the bundle stores it in float16, so the
  codec is trained against exactly the shipped weights). Split features and the backbone's own
  logits of the training set are computed once.
- Channel in the loop, per image: a BER drawn log-uniformly in [ber_min, ber_max] (a share of
  images clean), real Gray-coded bit flips on the symbol codes (`codec.training.channel_sim`), and random
  fragment erasures.
- Stage 1: denoising autoencoder, MSE(decoded, clean split features) / Var(features).
- Stage 2: task loss through the frozen tail: cross-entropy + distillation (KL at temperature 2
  to the backbone's logits) + 0.1 x the stage-1 MSE + a centre-usage term with a gradient (KL of
  the soft histogram to uniform) and, with --xai, the asymmetry-compensation loss below.

XAI asymmetry compensation: Integrated Gradients (captum) of the per-image task loss w.r.t. the
transmitted symbol values v (baseline 0) give A_s = v_s * gbar_s, gbar the path-averaged
gradient. We keep gbar fixed (detached) and v differentiable (its straight-through path reaches
the encoder), normalise q_s = |A_s| / sum |A| per image, and minimise log S - H(q): the encoder is
pushed to spread task-relevant information over more symbols, so one flipped symbol costs less.

Each epoch logs one line; a checkpoint ``<out>.ckpt`` after each epoch makes runs resumable
(--resume), and runs are deterministic for a given --seed on a given machine.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codec.datasets import split_options
from codec.model.quantizer import bits_entropy, usage_loss
from codec.model.semantic_codec import Normalise, SemanticCodec
from codec.training.channel_sim import SymbolChannel, sample_ber, sample_erasures
from codec.training.common import (
    batches,
    load_split,
    log,
    predict,
    progress,
    rng_state,
    save_atomic,
    seed_everything,
    set_rng_state,
    set_threads,
    to_tensor,
)
from codec.training.int8_grid import bake, int8_aware, snap_to_grid_
from codec.training.train_backbone import load_backbone_file
from snn.errors import SnnError

KD_T = 2.0


class ChannelForward:
    """One noisy pass: features -> encoder -> quantizer -> bit flips/erasures -> decoder."""

    def __init__(self, codec: SemanticCodec, channel: SymbolChannel, ber_min: float, ber_max: float,
                 clean_share: float, erasure_prob: float):
        self.codec, self.channel = codec, channel
        self.ber_min, self.ber_max, self.clean_share, self.erasure_prob = ber_min, ber_max, clean_share, erasure_prob

    def __call__(self, f: torch.Tensor, g: torch.Generator, ber: torch.Tensor | None = None,
                 erasure_prob: float | None = None):
        n = f.shape[0]
        z = self.codec.encoder(f).reshape(n, -1)
        if ber is None:
            ber = sample_ber(n, self.ber_min, self.ber_max, self.clean_share, g)
        p_er = self.erasure_prob if erasure_prob is None else erasure_prob
        erased = sample_erasures(n, z.shape[1], p_er, g)
        rx = self.channel.flip(self.codec.quantizer.assign(z.detach()), ber, g)
        values, idx, w = self.codec.quantizer(z, received=rx)
        present = (~erased).to(torch.float32)
        return self.codec.decode(values, present, ber), values, present, ber, w, idx


def with_split(backbone, record: dict, split: str | None, decode_to: str | None) -> dict:
    """Apply --split / --decode-to to the backbone; the record's kwargs say how to rebuild it."""
    if split is None and decode_to is None:
        return record
    try:
        backbone.set_split(split or backbone.split, decode_to)
    except ValueError as exc:
        raise SnnError(str(exc)) from None
    kwargs = dict(record["kwargs"], split=backbone.split)
    kwargs.pop("resume", None)
    if backbone.resume != backbone.split:
        kwargs["resume"] = backbone.resume
    return dict(record, kwargs=kwargs)


def xai_loss(codec, tail, values, present, ber, y, n_steps: int = 8) -> torch.Tensor:
    """IG-based asymmetry compensation (see the module docstring); captum does the attribution."""
    from captum.attr import IntegratedGradients

    def task_loss(v, p, b, t):
        return F.cross_entropy(tail(codec.decode(v, p, b)), t, reduction="none")

    ig = IntegratedGradients(task_loss)
    v0 = values.detach()
    attr = ig.attribute(v0, baselines=torch.zeros_like(v0), additional_forward_args=(present, ber, y),
                        n_steps=n_steps, method="gausslegendre")
    safe = torch.where(v0.abs() > 1e-6, v0, torch.ones_like(v0))
    gbar = torch.where(v0.abs() > 1e-6, attr / safe, torch.zeros_like(v0)).detach()
    a = (values * gbar).abs() * present + 1e-12
    q = a / a.sum(1, keepdim=True)
    entropy = -(q * torch.log(q)).sum(1)
    return (math.log(values.shape[1]) - entropy).mean()


def train_codec(args, command: str, make_errors) -> Path:
    """Train and write the bundle; `make_errors` (`channel.bit_errors.make_error_model`) builds the
    real bit-error models of the final evaluation."""
    set_threads(args.threads)
    g = seed_everything(args.seed)
    backbone, record = load_backbone_file(args.backbone)
    record = with_split(backbone, record, getattr(args, "split", None), getattr(args, "decode_to", None))
    with torch.no_grad():
        for t in backbone.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone.eval()
    data = args.data or record.get("data") or "fmnist"
    split = split_options(record) if data == record.get("data") else {}
    if getattr(args, "holdout", None) is not None:
        split = {"holdout": args.holdout, "split_seed": args.split_seed}
    record = dict(record, data=data, **{"holdout": None, **split})
    train, test = load_split(data, shape=tuple(record["input_shape"]), **split)
    train, test = train.take(args.count), test.take(args.count)
    if train.images.shape[1:3] != tuple(record["input_shape"][1:]):
        raise SnnError(f"data set {data} has {train.images.shape[1:3]} px images; the backbone expects "
                       f"{tuple(record['input_shape'][1:])}")
    norm = Normalise(record["input_mean"], record["input_std"])
    if args.int8_aware:  # the frozen device-side convs, once, before the features are computed
        n_convs = sum(snap_to_grid_(stage) for stage in backbone.head_stages())
        log(f"int8-aware: {n_convs} device-side backbone convs put on their int8 grid")
    t_start = time.time()
    log(f"computing split features of {len(train)} + {len(test)} images")
    head = lambda b: backbone.head(norm(b))  # noqa: E731
    ftr = predict(head, to_tensor(train.images), 500)
    fte = predict(head, to_tensor(test.images), 500)
    target = predict(backbone.bridge, ftr, 1000)  # what the decoder reconstructs (ftr itself unless --decode-to)
    teacher = predict(backbone.tail, target, 1000)
    ytr, yte = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    fvar = float(target.var())
    split_shape = tuple(ftr.shape[1:])
    out_shape = tuple(target.shape[1:]) if backbone.resume != backbone.split else None
    try:
        codec = SemanticCodec(split_shape, levels=args.levels, channels=args.channels, enc_kernel=args.enc_kernel,
                              enc_stride=args.enc_stride, enc_hidden=args.enc_hidden, dec_hidden=args.dec_hidden,
                              crop=args.crop, ber_conditioning=not args.no_ber_conditioning, gray=not args.binary,
                              out_shape=out_shape)
    except ValueError as exc:
        raise SnnError(str(exc)) from None
    if args.int8_aware:
        int8_aware(codec.encoder)
    channel = SymbolChannel(args.levels, gray=not args.binary)
    fwd = ChannelForward(codec, channel, args.ber_min, args.ber_max, args.clean_share, args.erasure_prob)
    log(f"split {backbone.split} {split_shape} (decoder reconstructs {backbone.resume} {codec.out_shape}) -> "
        f"{codec.n_symbols} symbols x {channel.bits} bits = "
        f"{math.ceil(codec.n_symbols * channel.bits / 8)} B; backbone test accuracy {record.get('accuracy')}")

    plan = [(1, e) for e in range(args.stage1_epochs)] + [(2, e) for e in range(args.stage2_epochs)]
    ckpt_path = args.out.with_name(args.out.name + ".ckpt")
    steps = math.ceil(len(ftr) / args.batch_size)
    state = {"done": 0}
    opt = sched = None

    def make_opt(stage: int):
        n_ep = args.stage1_epochs if stage == 1 else args.stage2_epochs
        o = torch.optim.AdamW(codec.parameters(), lr=args.lr, weight_decay=1e-4)
        total = max(1, n_ep * steps)
        s = torch.optim.lr_scheduler.LambdaLR(o, lambda i: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
        return o, s

    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        codec.load_state_dict(ck["codec"])
        state["done"] = ck["done"]
        stage = plan[state["done"] - 1][0] if state["done"] else 1
        opt, sched = make_opt(stage)
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        set_rng_state(g, ck["rng"])
        log(f"resumed from {ckpt_path} after {state['done']} of {len(plan)} epochs")

    current_stage = plan[state["done"] - 1][0] if state["done"] else None
    for k in range(state["done"], len(plan)):
        stage, e = plan[k]
        if stage != current_stage:
            opt, sched = make_opt(stage)
            current_stage = stage
        codec.train()
        sums = {"loss": 0.0, "mse": 0.0, "ce": 0.0, "xai": 0.0}
        n_seen = 0
        t0 = time.time()
        for bi, idx in enumerate(progress(batches(len(ftr), args.batch_size, g), steps, f"stage {stage} epoch {e + 1}")):
            f, y = ftr[idx], ytr[idx]
            dec, values, present, ber, w, _ = fwd(f, g)
            mse = F.mse_loss(dec, target[idx]) / fvar
            loss = mse + args.usage_weight * usage_loss(w)
            if stage == 2:
                logits = backbone.tail(dec)
                ce = F.cross_entropy(logits, y)
                kd = F.kl_div(F.log_softmax(logits / KD_T, 1), F.softmax(teacher[idx] / KD_T, 1),
                              reduction="batchmean") * KD_T ** 2
                loss = ce + kd + 0.1 * mse + args.usage_weight * usage_loss(w)
                sums["ce"] += ce.item() * len(idx)
                if args.xai and bi % args.xai_every == 0:
                    xl = xai_loss(codec, backbone.tail, values, present, ber, y)
                    loss = loss + args.xai_weight * xl
                    sums["xai"] += xl.item() * len(idx) * args.xai_every
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["loss"] += loss.item() * len(idx)
            sums["mse"] += mse.item() * len(idx)
            n_seen += len(idx)
        codec.eval()
        accs = {}
        with torch.no_grad():
            for b in (0.0, 1e-2, 1e-1):
                eg = torch.Generator().manual_seed(1234)
                logits = predict(lambda ff: backbone.tail(fwd(ff, eg, ber=torch.full((len(ff),), b), erasure_prob=0.0)[0]), fte, 1000)
                accs[b] = float((logits.argmax(1) == yte).float().mean())
            ent = bits_entropy(codec.quantizer.assign(codec.encoder(fte[:2000])), args.levels)
        parts = " ".join(f"{k} {v / n_seen:.4f}" for k, v in sums.items() if v)
        log(f"codec stage {stage} epoch {e + 1} {parts} | test acc ber0 {accs[0.0]:.4f} ber1e-2 {accs[1e-2]:.4f} "
            f"ber1e-1 {accs[1e-1]:.4f} | H {ent:.2f} bits | {time.time() - t0:.0f}s")
        save_atomic({"codec": codec.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "rng": rng_state(g), "done": k + 1}, ckpt_path)

    return finish_bundle(args, command, backbone, record, codec, test, time.time() - t_start, make_errors)


def finish_bundle(args, command, backbone, record, codec, test, train_seconds: float, make_errors) -> Path:
    """Freeze centres, write the bundle, re-load it and store the measured figures in it."""
    from codec.bundle import load_bundle, make_manifest, write_bundle
    from codec.evaluate import evaluate

    codec.eval()
    bake(codec.encoder)  # no-op unless --int8-aware: the snapped weights become the plain ones
    codec.quantizer.freeze()
    centres = codec.quantizer.centres().detach().numpy()
    name = args.out.stem
    extra = {"train_seconds": round(train_seconds, 1), "backbone_command": record.get("command"),
             "backbone_seed": record.get("seed"), "backbone_train_seconds": round(record.get("train_seconds", 0), 1)}
    manifest = make_manifest(name, record, codec.config, centres, command, args.seed, extra=extra)
    write_bundle(args.out, manifest, backbone.state_dict(), codec.state_dict())
    bundle = load_bundle(args.out)
    log(f"wrote {args.out} ({bundle!r}); measuring it on {test.name}")
    figures = evaluate(bundle, test, [0.0, 1e-3, 1e-2, 5e-2, 1e-1], ["iid"], make_errors, seeds=3, log=log)
    manifest["metrics"] = {k: figures[k] for k in ("data", "count", "payload_bytes", "backbone_accuracy", "results")}
    write_bundle(args.out, manifest, backbone.state_dict(), codec.state_dict())
    load_bundle(args.out)
    log(f"saved {args.out}: backbone {figures['backbone_accuracy']:.4f}, "
        + ", ".join(f"BER {r['ber']:g}: {r['accuracy']:.4f}" for r in figures["results"]))
    return args.out
