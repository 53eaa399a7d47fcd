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

Schedules count optimisation steps (--stage1-steps/--stage2-steps, turned into whole epochs for
the data size, so a small data set is not undertrained; --stage*-epochs override). A seeded
validation split of the training set (the backbone's, never the test set) scores every stage-2
epoch and the best one is kept. --finetune-head also trains the device-side backbone stages in
stage 2 (through their int8 grid with --int8-aware), distilled from a frozen copy of the original
backbone, with a distillation term on the backbone's own path so the head stays a valid head.
CUDA is used when present; random draws stay on a CPU generator so a seed means the same channel.

Each epoch logs one line; a checkpoint ``<out>.ckpt`` after each epoch makes runs resumable
(--resume), and runs are deterministic for a given --seed on a given machine.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codec.datasets import split_options
from codec.model.demapper import demap
from codec.model.quantizer import bits_entropy, usage_loss
from codec.model.semantic_codec import Normalise, SemanticCodec
from codec.training import distributed
from codec.training.channel_sim import SymbolChannel, sample_ber, sample_erasures
from codec.training.common import (
    augment,
    batches,
    epochs_for,
    load_split,
    log,
    pick_device,
    predict,
    progress,
    rng_state,
    save_atomic,
    seed_everything,
    set_rng_state,
    set_threads,
    split_validation,
    to_tensor,
)
from codec.training.int8_grid import bake, int8_aware, snap_to_grid_
from codec.training.train_backbone import load_backbone_file
from snn.errors import SnnError

KD_T = 2.0                 # distillation temperature
WEIGHT_DECAY = 1e-4        # AdamW weight decay of the codec (and the fine-tuned head)
LR_FLOOR = 0.02            # cosine schedule ends at this share of the learning rate
MSE_WEIGHT_STAGE2 = 0.1    # the stage-1 reconstruction loss kept in stage 2
STAGE1_STEPS = 400         # default schedule in optimisation steps (epochs derived per data set) ...
STAGE2_STEPS = 1400
STAGE1_MIN_EPOCHS = 2      # ... and at least these epochs: 1,400 steps alone left a 55k-image set
STAGE2_MIN_EPOCHS = 14     # (Fashion-MNIST, 7 epochs) 2.2 points under its backbone; 14 is the shipped run
SELECT_BERS = (0.0, 1e-2, 1e-1)  # model selection: mean validation accuracy at these BERs
GAP_WARN = 0.03            # warn when the codec at BER 0 trails its backbone by more than this


def _ber_conditioning(args) -> bool:
    """--ber-conditioning opts in (off by default: the ablations measured no gain from it)."""
    on, off = getattr(args, "ber_conditioning", False), getattr(args, "no_ber_conditioning", False)
    if on and off:
        raise SnnError("--ber-conditioning and --no-ber-conditioning contradict each other: give one")
    return bool(on)


class ChannelForward:
    """One noisy pass: features -> encoder -> quantizer -> bit flips/erasures -> decoder.

    Random draws come from a CPU generator (so a seed means the same thing on any device) and are
    moved to the features' device."""

    def __init__(self, codec: SemanticCodec, channel: SymbolChannel, ber_min: float, ber_max: float,
                 clean_share: float, erasure_prob: float):
        self.codec, self.channel = codec, channel
        self.ber_min, self.ber_max, self.clean_share, self.erasure_prob = ber_min, ber_max, clean_share, erasure_prob

    def __call__(self, f: torch.Tensor, g: torch.Generator, ber: torch.Tensor | None = None,
                 erasure_prob: float | None = None):
        n, dev = f.shape[0], f.device
        z = self.codec.encoder(f).reshape(n, -1)
        if ber is None:
            ber = sample_ber(n, self.ber_min, self.ber_max, self.clean_share, g)
        ber = ber.to(dev)
        p_er = self.erasure_prob if erasure_prob is None else erasure_prob
        erased = sample_erasures(n, z.shape[1], p_er, g).to(dev)
        rx = self.channel.flip(self.codec.quantizer.assign(z.detach()), ber, g)
        values, idx, w = self.codec.quantizer(z, received=rx)
        if self.codec.demapper is not None:   # the MMSE centres, the soft path's gradient kept
            c = self.codec.quantizer.centres()
            values = values - c[rx] + demap(c, rx, ber, self.codec.demapper)
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


class Features:
    """What the loop trains on: split features, the decoder's target and the teacher's logits.

    Without --finetune-head they come from the frozen backbone once, up front. With it the device
    stages train too, so every batch runs the (augmented) images through the trainable head, and a
    frozen copy of the original backbone gives the target and the teacher."""

    def __init__(self, backbone, norm, finetune: bool, dev: torch.device, g: torch.Generator):
        self.backbone, self.norm, self.finetune, self.dev, self.g = backbone, norm, finetune, dev, g
        self.frozen = copy.deepcopy(backbone).eval() if finetune else backbone

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.head(self.norm(x))

    def precompute(self, images) -> dict:
        """Everything the loop needs of a data set (images kept instead of features when fine-tuning)."""
        x = to_tensor(images)
        if self.finetune:
            return {"x": x.to(self.dev)}
        f = predict(self.head, x, 500, self.dev)
        target = predict(self.backbone.bridge, f, 1000)
        return {"f": f, "target": target, "teacher": predict(self.backbone.tail, target, 1000)}

    def batch(self, data: dict, idx: torch.Tensor, train_head: bool):
        """(features, target, teacher) of the images `idx`."""
        if not self.finetune:
            return data["f"][idx], data["target"][idx], data["teacher"][idx]
        x = self.norm(augment(data["x"][idx], self.g))
        with torch.no_grad():
            target = self.frozen.bridge(self.frozen.head(x))
            teacher = self.frozen.tail(target)
        with torch.set_grad_enabled(train_head):
            f = self.backbone.head(x)
        return f, target, teacher

    def eval_features(self, data: dict) -> torch.Tensor:
        return data["f"] if not self.finetune else predict(self.head, data["x"], 500)


def _kd(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits / KD_T, 1), F.softmax(teacher / KD_T, 1), reduction="batchmean") * KD_T ** 2


def _prepare_backbone(args, dev: torch.device):
    """The frozen float16-rounded backbone (head on the int8 grid with --int8-aware) and its record."""
    backbone, record = load_backbone_file(args.backbone)
    record = with_split(backbone, record, getattr(args, "split", None), getattr(args, "decode_to", None))
    with torch.no_grad():
        for t in backbone.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone.eval()
    if args.int8_aware:  # the device-side convs, once, before any feature is computed
        n_convs = sum(snap_to_grid_(stage) for stage in backbone.head_stages())
        log(f"int8-aware: {n_convs} device-side backbone convs put on their int8 grid")
    return backbone.to(dev), record


def _head_params(backbone) -> list[torch.nn.Parameter]:
    return [p for stage in backbone.head_stages() for p in stage.parameters()]


def train_codec(args, command: str, make_errors) -> Path:
    """Train and write the bundle; `make_errors` (`channel.bit_errors.make_error_model`) builds the
    real bit-error models of the final evaluation."""
    set_threads(args.threads)
    dev = pick_device(getattr(args, "device", "auto"))
    g = seed_everything(args.seed)
    dist = distributed.current()
    finetune = bool(getattr(args, "finetune_head", False))
    backbone, record = _prepare_backbone(args, dev)
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
    train, val = split_validation(train, seed=int(record.get("val_seed", 0)))
    norm = Normalise(record["input_mean"], record["input_std"]).to(dev)
    feats = Features(backbone, norm, finetune, dev, g)
    t_start = time.time()
    log(f"computing split features of {len(train)} training + {len(val)} validation images on {dev}")
    tr, va = feats.precompute(train.images), feats.precompute(val.images)
    probe = feats.batch(tr, torch.arange(min(len(train), 256), device=dev), train_head=False)
    ytr, yva = torch.from_numpy(train.labels).to(dev), torch.from_numpy(val.labels).to(dev)
    fvar = float(probe[1].var()) if finetune else float(tr["target"].var())
    split_shape = tuple(probe[0].shape[1:])
    out_shape = tuple(probe[1].shape[1:]) if backbone.resume != backbone.split else None
    if getattr(args, "init", None):
        codec = _codec_from_bundle(args.init, split_shape)
    else:
        try:
            codec = SemanticCodec(split_shape, levels=args.levels, channels=args.channels, enc_kernel=args.enc_kernel,
                                  enc_stride=args.enc_stride, enc_hidden=args.enc_hidden, dec_hidden=args.dec_hidden,
                                  crop=args.crop, ber_conditioning=_ber_conditioning(args), gray=not args.binary,
                                  out_shape=out_shape, demapper="soft" if getattr(args, "soft_demapper", False) else "hard")
        except ValueError as exc:
            raise SnnError(str(exc)) from None
    if args.int8_aware:
        int8_aware(codec.encoder)
        if finetune:
            for stage in backbone.head_stages():
                int8_aware(stage)
    codec.to(dev)
    channel = SymbolChannel(args.levels, gray=not args.binary)
    fwd = ChannelForward(codec, channel, args.ber_min, args.ber_max, args.clean_share, args.erasure_prob)
    steps = math.ceil(len(train) / args.batch_size)
    n1 = (args.stage1_epochs if args.stage1_epochs is not None
          else epochs_for(args.stage1_steps, steps, STAGE1_MIN_EPOCHS))
    n2 = (args.stage2_epochs if args.stage2_epochs is not None
          else epochs_for(args.stage2_steps, steps, STAGE2_MIN_EPOCHS))
    log(f"split {backbone.split} {split_shape} (decoder reconstructs {backbone.resume} {codec.out_shape}) -> "
        f"{codec.n_symbols} symbols x {channel.bits} bits = "
        f"{math.ceil(codec.n_symbols * channel.bits / 8)} B; backbone test accuracy {record.get('accuracy')}; "
        f"stage 1 {n1} epochs, stage 2 {n2} epochs of {steps} steps{'; device stages fine-tuned' if finetune else ''}")

    plan = [(1, e) for e in range(n1)] + [(2, e) for e in range(n2)]
    ckpt_path = args.out.with_name(args.out.name + ".ckpt")
    state = {"done": 0}
    best = {"score": -1.0, "epoch": 0, "codec": None, "backbone": None}
    opt = sched = None

    def make_opt(stage: int):
        groups = [{"params": list(codec.parameters()), "lr": args.lr}]
        if finetune and stage == 2:
            for p in _head_params(backbone):
                p.requires_grad_(True)
            groups.append({"params": _head_params(backbone), "lr": args.head_lr})
        o = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
        total = max(1, (n1 if stage == 1 else n2) * steps)
        s = torch.optim.lr_scheduler.LambdaLR(
            o, lambda i: LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
        return o, s

    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        codec.load_state_dict(ck["codec"])
        if ck.get("backbone") is not None:
            backbone.load_state_dict(ck["backbone"])
        state["done"] = ck["done"]
        best = ck.get("best", best)
        stage = plan[state["done"] - 1][0] if state["done"] else 1
        opt, sched = make_opt(stage)
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        set_rng_state(g, ck["rng"])
        log(f"resumed from {ckpt_path} after {state['done']} of {len(plan)} epochs")

    dist.broadcast_state(codec)
    current_stage = plan[state["done"] - 1][0] if state["done"] else None
    for k in range(state["done"], len(plan)):
        stage, e = plan[k]
        if stage != current_stage:
            opt, sched = make_opt(stage)
            current_stage = stage
        codec.train()
        sums = {"loss": 0.0, "mse": 0.0, "ce": 0.0, "xai": 0.0, "aux": 0.0}
        n_seen = 0
        t0 = time.time()
        order_g, noise_g = dist.epoch_generators(g, args.seed, k)
        for bi, (n_global, idx) in enumerate(progress(dist.shards(batches(len(train), args.batch_size, order_g)),
                                                      steps, f"stage {stage} epoch {e + 1}")):
            idx = idx.to(dev)
            f, target, teacher = feats.batch(tr, idx, train_head=finetune and stage == 2)
            y = ytr[idx]
            dec, values, present, ber, w, _ = fwd(f, noise_g)
            mse = F.mse_loss(dec, target) / fvar
            loss = mse + args.usage_weight * usage_loss(w)
            if stage == 2:
                logits = backbone.tail(dec)
                ce = F.cross_entropy(logits, y)
                loss = ce + _kd(logits, teacher) + MSE_WEIGHT_STAGE2 * mse + args.usage_weight * usage_loss(w)
                sums["ce"] += ce.item() * len(idx)
                if finetune:  # keep the device stages a valid head of the backbone they belong to
                    aux = _kd(backbone.tail(backbone.bridge(f)), teacher)
                    loss = loss + aux
                    sums["aux"] += aux.item() * len(idx)
                if args.xai and bi % args.xai_every == 0:
                    xl = xai_loss(codec, backbone.tail, values, present, ber, y)
                    loss = loss + args.xai_weight * xl
                    sums["xai"] += xl.item() * len(idx) * args.xai_every
            opt.zero_grad(set_to_none=True)
            (loss * dist.share(len(idx), n_global)).backward()
            dist.sync_gradients([p for group in opt.param_groups for p in group["params"]])
            opt.step()
            sched.step()
            sums["loss"] += loss.item() * len(idx)
            sums["mse"] += mse.item() * len(idx)
            n_seen += len(idx)
        codec.eval()
        accs = _channel_accuracy(fwd, backbone, feats.eval_features(va), yva, SELECT_BERS) if len(val) else {}
        score = sum(accs.values()) / len(accs) if accs else 0.0
        if stage == plan[-1][0] and score >= best["score"]:  # model selection on validation only
            best = {"score": score, "epoch": k + 1, "codec": _cpu_state(codec),
                    "backbone": _cpu_state(backbone) if finetune else None}
        with torch.no_grad():
            ent = bits_entropy(codec.quantizer.assign(codec.encoder(feats.eval_features(va)[:2000])), args.levels) \
                if len(val) else float("nan")
        sums = dict(zip(sums, dist.sum(*sums.values())))
        n_seen = dist.sum(n_seen)[0]
        parts = " ".join(f"{k} {v / n_seen:.4f}" for k, v in sums.items() if v)
        shown = " ".join(f"ber{b:g} {a:.4f}" for b, a in accs.items())
        log(f"codec stage {stage} epoch {e + 1} {parts} | val acc {shown} | H {ent:.2f} bits | {time.time() - t0:.0f}s")
        save_atomic({"codec": codec.state_dict(), "backbone": backbone.state_dict() if finetune else None,
                     "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": rng_state(g), "done": k + 1,
                     "best": best}, ckpt_path)

    if best["codec"] is not None:
        log(f"keeping epoch {best['epoch']} of {len(plan)}: best mean validation accuracy {best['score']:.4f} "
            f"over BER {', '.join(f'{b:g}' for b in SELECT_BERS)}")
        codec.load_state_dict(best["codec"])
        if best["backbone"] is not None:
            backbone.load_state_dict(best["backbone"])
    if finetune:
        for stage in backbone.head_stages():
            bake(stage)
    codec.cpu()
    backbone.cpu()
    extra = {"stage1_epochs": n1, "stage2_epochs": n2, "best_epoch": best["epoch"],
             "val_score": round(best["score"], 6), "finetune_head": finetune}
    if not dist.is_main:  # rank 0 writes and measures the bundle
        return args.out
    extra["world_size"] = dist.world_size
    return finish_bundle(args, command, backbone, record, codec, test, time.time() - t_start, make_errors, extra)


def _codec_from_bundle(path, split_shape: tuple) -> SemanticCodec:
    """--init: continue from a bundle's codec (its shape flags win over the command line's; its
    centres stay fixed)."""
    from codec.bundle import load_bundle

    src = load_bundle(path)
    codec = SemanticCodec.from_config(src.config["codec"])
    codec.load_state_dict(src.codec.state_dict())
    if tuple(codec.config["split_shape"]) != tuple(split_shape):
        raise SnnError(f"--init {path}: its codec reads {tuple(codec.config['split_shape'])} features, this backbone's split "
                       f"gives {tuple(split_shape)}: pass the same --split/--decode-to")
    log(f"codec initialised from {path} ({src!r})")
    return codec


def _cpu_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@torch.no_grad()
def _channel_accuracy(fwd: ChannelForward, backbone, f: torch.Tensor, y: torch.Tensor, bers) -> dict:
    """Top-1 on features `f` through the training channel at each BER (fixed channel seed)."""
    accs = {}
    for b in bers:
        eg = torch.Generator().manual_seed(1234)
        logits = predict(lambda ff: backbone.tail(fwd(ff, eg, ber=torch.full((len(ff),), b), erasure_prob=0.0)[0]),
                         f, 1000)
        accs[b] = float((logits.argmax(1) == y).float().mean())
    return accs


def finish_bundle(args, command, backbone, record, codec, test, train_seconds: float, make_errors,
                  extra_fields: dict | None = None) -> Path:
    """Freeze centres, write the bundle, re-load it and store the measured figures in it."""
    from codec.bundle import load_bundle, make_manifest, write_bundle
    from codec.evaluate import evaluate

    codec.eval()
    bake(codec.encoder)  # no-op unless --int8-aware: the snapped weights become the plain ones
    codec.quantizer.freeze()
    centres = codec.quantizer.centres().detach().numpy()
    name = args.out.stem
    extra = {"train_seconds": round(train_seconds, 1), "backbone_command": record.get("command"),
             "backbone_seed": record.get("seed"), "backbone_train_seconds": round(record.get("train_seconds", 0), 1),
             **(extra_fields or {})}
    manifest = make_manifest(name, record, codec.config, centres, command, args.seed, extra=extra)
    write_bundle(args.out, manifest, backbone.state_dict(), codec.state_dict())
    bundle = load_bundle(args.out)
    log(f"wrote {args.out} ({bundle!r}); measuring it on {test.name}")
    figures = evaluate(bundle, test, [0.0, 1e-3, 1e-2, 5e-2, 1e-1], ["iid"], make_errors, seeds=3, log=log)
    manifest["metrics"] = {k: figures[k] for k in ("data", "count", "payload_bytes", "backbone_accuracy", "results")}
    warning = gap_warning(figures, args, (extra_fields or {}).get("stage2_epochs"))
    if warning:
        manifest["warnings"] = [warning]
    write_bundle(args.out, manifest, backbone.state_dict(), codec.state_dict())
    load_bundle(args.out)
    log(f"saved {args.out}: backbone {figures['backbone_accuracy']:.4f}, "
        + ", ".join(f"BER {r['ber']:g}: {r['accuracy']:.4f}" for r in figures["results"]))
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    return args.out


def gap_warning(figures: dict, args, stage2_epochs: int | None) -> str | None:
    """A sentence when the codec at BER 0 trails its backbone by more than GAP_WARN, naming the fix."""
    clean = next((r["accuracy"] for r in figures["results"] if r["ber"] == 0), None)
    if clean is None or figures["backbone_accuracy"] - clean <= GAP_WARN:
        return None
    steps = getattr(args, "stage2_steps", STAGE2_STEPS)
    return (f"the codec at BER 0 ({clean:.2%}) trails its backbone ({figures['backbone_accuracy']:.2%}) by "
            f"{100 * (figures['backbone_accuracy'] - clean):.1f} points (more than {100 * GAP_WARN:.0f}): train "
            f"stage 2 longer, e.g. --stage2-steps {4 * steps} (this run: {stage2_epochs} epochs), or widen the "
            f"decoder (--dec-hidden)")
