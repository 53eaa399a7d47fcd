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
from dataclasses import dataclass
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
from codec.training.recipe import CodecRecipe
from codec.training.int8_grid import bake, int8_aware, snap_to_grid_
from codec.training.train_backbone import load_backbone_file
from snn.errors import SnnError

KD_T = 2.0                 # distillation temperature
WEIGHT_DECAY = 1e-4        # AdamW weight decay of the codec (and the fine-tuned head)
LR_FLOOR = 0.02            # cosine schedule ends at this share of the learning rate
MSE_WEIGHT_STAGE2 = 0.1    # the stage-1 reconstruction loss kept in stage 2
STAGE1_MIN_EPOCHS = 2      # the recipe's steps (recipe.STAGE*_STEPS) and at least these epochs: 1,400 steps alone left a 55k-image set
STAGE2_MIN_EPOCHS = 14     # (Fashion-MNIST, 7 epochs) 2.2 points under its backbone; 14 is the shipped run
SELECT_BERS = (0.0, 1e-2, 1e-1)  # model selection: mean validation accuracy at these BERs
GAP_WARN = 0.03            # warn when the codec at BER 0 trails its backbone by more than this


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


def _prepare_backbone(recipe: CodecRecipe, dev: torch.device):
    """The frozen float16-rounded backbone (head on the int8 grid with --int8-aware) and its record."""
    backbone, record = load_backbone_file(recipe.backbone)
    record = with_split(backbone, record, recipe.split, recipe.decode_to)
    with torch.no_grad():
        for t in backbone.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone.eval()
    if recipe.int8_aware:  # the device-side convs, once, before any feature is computed
        n_convs = sum(snap_to_grid_(stage) for stage in backbone.head_stages())
        log(f"int8-aware: {n_convs} device-side backbone convs put on their int8 grid")
    return backbone.to(dev), record


def _head_params(backbone) -> list[torch.nn.Parameter]:
    return [p for stage in backbone.head_stages() for p in stage.parameters()]


@dataclass
class _Run:
    """What the stages of one training run share (built once by `_prepare`)."""

    recipe: CodecRecipe
    dev: torch.device
    g: torch.Generator
    finetune: bool
    backbone: torch.nn.Module
    record: dict
    train: object          # codec.datasets.Dataset (the training split less the validation share)
    val: object
    test: object
    feats: Features
    tr: dict               # the training set as the loop reads it (Features.precompute)
    va: dict
    ytr: torch.Tensor
    yva: torch.Tensor
    fvar: float            # variance of the decoder's target: the MSE's scale
    split_shape: tuple
    out_shape: tuple | None
    t_start: float         # when feature extraction began: the manifest's train_seconds counts from here


def train_codec(recipe: CodecRecipe, command: str, make_errors, export_edge=None) -> Path:
    """Train the codec the recipe describes and write its bundle once (rank 0 under --nproc).

    `make_errors` is the channel's error-model factory (`channel.bit_errors.make_error_model`;
    codec never imports channel) for the bundle's measured figures; `export_edge(bundle) ->
    bytes`, when given, is the ONNX edge half the bundle carries (`export.onnx_export`)."""
    set_threads(recipe.threads)
    dev = pick_device(recipe.device)
    g = seed_everything(recipe.seed)
    dist = distributed.current()
    run = _prepare(recipe, dev, g)
    codec = _make_codec(run)
    channel = SymbolChannel(recipe.levels, gray=not recipe.binary)
    fwd = ChannelForward(codec, channel, recipe.ber_min, recipe.ber_max, recipe.clean_share, recipe.erasure_prob)
    steps = math.ceil(len(run.train) / recipe.batch_size)
    n1 = (recipe.stage1_epochs if recipe.stage1_epochs is not None
          else epochs_for(recipe.stage1_steps, steps, STAGE1_MIN_EPOCHS))
    n2 = (recipe.stage2_epochs if recipe.stage2_epochs is not None
          else epochs_for(recipe.stage2_steps, steps, STAGE2_MIN_EPOCHS))
    log(f"split {run.backbone.split} {run.split_shape} (decoder reconstructs {run.backbone.resume} "
        f"{codec.out_shape}) -> {codec.n_symbols} symbols x {channel.bits} bits = "
        f"{math.ceil(codec.n_symbols * channel.bits / 8)} B; backbone test accuracy {run.record.get('accuracy')}; "
        f"stage 1 {n1} epochs, stage 2 {n2} epochs of {steps} steps"
        f"{'; device stages fine-tuned' if run.finetune else ''}")
    best = _fit(run, codec, fwd, [(1, e) for e in range(n1)] + [(2, e) for e in range(n2)], steps, (n1, n2))
    if best["codec"] is not None:
        log(f"keeping epoch {best['epoch']} of {n1 + n2}: best mean validation accuracy {best['score']:.4f} "
            f"over BER {', '.join(f'{b:g}' for b in SELECT_BERS)}")
        codec.load_state_dict(best["codec"])
        if best["backbone"] is not None:
            run.backbone.load_state_dict(best["backbone"])
    if run.finetune:
        for stage in run.backbone.head_stages():
            bake(stage)
    codec.cpu()
    run.backbone.cpu()
    extra = {"stage1_epochs": n1, "stage2_epochs": n2, "best_epoch": best["epoch"],
             "val_score": round(best["score"], 6), "finetune_head": run.finetune}
    if not dist.is_main:  # rank 0 writes and measures the bundle
        return recipe.out
    extra["world_size"] = dist.world_size
    return finish_bundle(recipe, command, run.backbone, run.record, codec, run.test, time.time() - run.t_start,
                         make_errors, extra, export_edge)


def _prepare(recipe: CodecRecipe, dev: torch.device, g: torch.Generator) -> _Run:
    """The frozen backbone, the data (train, validation, test) and the features the loop reads."""
    finetune = recipe.finetune_head
    backbone, record = _prepare_backbone(recipe, dev)
    data = recipe.data or record.get("data") or "fmnist"
    split = split_options(record) if data == record.get("data") else {}
    if recipe.holdout is not None:
        split = {"holdout": recipe.holdout, "split_seed": recipe.split_seed}
    record = dict(record, data=data, **{"holdout": None, **split})
    train, test = load_split(data, shape=tuple(record["input_shape"]), **split)
    train, test = train.take(recipe.count), test.take(recipe.count)
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
    out_shape = tuple(probe[1].shape[1:]) if backbone.resume != backbone.split else None
    return _Run(recipe, dev, g, finetune, backbone, record, train, val, test, feats, tr, va, ytr, yva, fvar,
                tuple(probe[0].shape[1:]), out_shape, t_start)


def _make_codec(run: _Run) -> SemanticCodec:
    """A new codec of the recipe's shape (or --init's), int8-aware if asked, on the run's device."""
    r = run.recipe
    if r.init is not None:
        codec = _codec_from_bundle(r.init, run.split_shape)
    else:
        try:
            codec = SemanticCodec(run.split_shape, levels=r.levels, channels=r.channels, enc_kernel=r.enc_kernel,
                                  enc_stride=r.enc_stride, enc_hidden=r.enc_hidden, dec_hidden=r.dec_hidden,
                                  crop=r.crop, ber_conditioning=r.ber_conditioning, gray=not r.binary,
                                  out_shape=run.out_shape, demapper="soft" if r.soft_demapper else "hard")
        except ValueError as exc:
            raise SnnError(str(exc)) from None
    if r.int8_aware:
        int8_aware(codec.encoder)
        if run.finetune:
            for stage in run.backbone.head_stages():
                int8_aware(stage)
    return codec.to(run.dev)


def _optimizer(run: _Run, codec: SemanticCodec, stage: int, epochs: int, steps: int):
    """AdamW over the codec (+ the device stages in stage 2 with --finetune-head), cosine schedule."""
    groups = [{"params": list(codec.parameters()), "lr": run.recipe.lr}]
    if run.finetune and stage == 2:
        for p in _head_params(run.backbone):
            p.requires_grad_(True)
        groups.append({"params": _head_params(run.backbone), "lr": run.recipe.head_lr})
    o = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
    total = max(1, epochs * steps)
    s = torch.optim.lr_scheduler.LambdaLR(
        o, lambda i: LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    return o, s


def _fit(run: _Run, codec: SemanticCodec, fwd: ChannelForward, plan: list[tuple[int, int]], steps: int,
         epochs: tuple[int, int]) -> dict:
    """Every epoch of the plan (resuming from OUT.ckpt with --resume), a checkpoint after each;
    the best stage-2 epoch on validation: {score, epoch, codec, backbone}."""
    recipe, backbone, dist = run.recipe, run.backbone, distributed.current()
    ckpt_path = recipe.out.with_name(recipe.out.name + ".ckpt")
    done = 0
    best = {"score": -1.0, "epoch": 0, "codec": None, "backbone": None}
    opt = sched = None

    def make_opt(stage: int):
        return _optimizer(run, codec, stage, epochs[stage - 1], steps)

    if recipe.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        codec.load_state_dict(ck["codec"])
        if ck.get("backbone") is not None:
            backbone.load_state_dict(ck["backbone"])
        done = ck["done"]
        best = ck.get("best", best)
        stage = plan[done - 1][0] if done else 1
        opt, sched = make_opt(stage)
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        set_rng_state(run.g, ck["rng"])
        log(f"resumed from {ckpt_path} after {done} of {len(plan)} epochs")

    dist.broadcast_state(codec)
    current_stage = plan[done - 1][0] if done else None
    for k in range(done, len(plan)):
        stage, e = plan[k]
        if stage != current_stage:
            opt, sched = make_opt(stage)
            current_stage = stage
        t0 = time.time()
        sums, n_seen = _train_epoch(run, codec, fwd, opt, sched, stage, e, k, steps)
        codec.eval()
        accs = _channel_accuracy(fwd, backbone, run.feats.eval_features(run.va), run.yva, SELECT_BERS) \
            if len(run.val) else {}
        score = sum(accs.values()) / len(accs) if accs else 0.0
        if stage == plan[-1][0] and score >= best["score"]:  # model selection on validation only
            best = {"score": score, "epoch": k + 1, "codec": _cpu_state(codec),
                    "backbone": _cpu_state(backbone) if run.finetune else None}
        with torch.no_grad():
            ent = bits_entropy(codec.quantizer.assign(codec.encoder(run.feats.eval_features(run.va)[:2000])),
                               recipe.levels) if len(run.val) else float("nan")
        sums = dict(zip(sums, dist.sum(*sums.values())))
        n_seen = dist.sum(n_seen)[0]
        parts = " ".join(f"{name} {v / n_seen:.4f}" for name, v in sums.items() if v)
        shown = " ".join(f"ber{b:g} {a:.4f}" for b, a in accs.items())
        log(f"codec stage {stage} epoch {e + 1} {parts} | val acc {shown} | H {ent:.2f} bits | {time.time() - t0:.0f}s")
        save_atomic({"codec": codec.state_dict(), "backbone": backbone.state_dict() if run.finetune else None,
                     "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": rng_state(run.g), "done": k + 1,
                     "best": best}, ckpt_path)
    return best


def _train_epoch(run: _Run, codec: SemanticCodec, fwd: ChannelForward, opt, sched, stage: int, e: int, k: int,
                 steps: int) -> tuple[dict, int]:
    """One epoch of stage 1 (denoising) or stage 2 (task, + distillation, + --xai); loss sums."""
    recipe, backbone, dist, finetune = run.recipe, run.backbone, distributed.current(), run.finetune
    codec.train()
    sums = {"loss": 0.0, "mse": 0.0, "ce": 0.0, "xai": 0.0, "aux": 0.0}
    n_seen = 0
    order_g, noise_g = dist.epoch_generators(run.g, recipe.seed, k)
    for bi, (n_global, idx) in enumerate(progress(dist.shards(batches(len(run.train), recipe.batch_size, order_g)),
                                                  steps, f"stage {stage} epoch {e + 1}")):
        idx = idx.to(run.dev)
        f, target, teacher = run.feats.batch(run.tr, idx, train_head=finetune and stage == 2)
        y = run.ytr[idx]
        dec, values, present, ber, w, _ = fwd(f, noise_g)
        mse = F.mse_loss(dec, target) / run.fvar
        loss = mse + recipe.usage_weight * usage_loss(w)
        if stage == 2:
            logits = backbone.tail(dec)
            ce = F.cross_entropy(logits, y)
            loss = ce + _kd(logits, teacher) + MSE_WEIGHT_STAGE2 * mse + recipe.usage_weight * usage_loss(w)
            sums["ce"] += ce.item() * len(idx)
            if finetune:  # keep the device stages a valid head of the backbone they belong to
                aux = _kd(backbone.tail(backbone.bridge(f)), teacher)
                loss = loss + aux
                sums["aux"] += aux.item() * len(idx)
            if recipe.xai and bi % recipe.xai_every == 0:
                xl = xai_loss(codec, backbone.tail, values, present, ber, y)
                loss = loss + recipe.xai_weight * xl
                sums["xai"] += xl.item() * len(idx) * recipe.xai_every
        opt.zero_grad(set_to_none=True)
        (loss * dist.share(len(idx), n_global)).backward()
        dist.sync_gradients([p for group in opt.param_groups for p in group["params"]])
        opt.step()
        sched.step()
        sums["loss"] += loss.item() * len(idx)
        sums["mse"] += mse.item() * len(idx)
        n_seen += len(idx)
    return sums, n_seen


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
        logits = predict(lambda ff, eg=eg, b=b: backbone.tail(fwd(ff, eg, ber=torch.full((len(ff),), b),
                                                                 erasure_prob=0.0)[0]), f, 1000)
        accs[b] = float((logits.argmax(1) == y).float().mean())
    return accs


def finish_bundle(recipe: CodecRecipe, command: str, backbone, record: dict, codec, test, train_seconds: float,
                  make_errors, extra_fields: dict | None = None, export_edge=None) -> Path:
    """Freeze centres, measure the bundle as it will be stored, and write it once, with its
    figures (and its ONNX edge half when `export_edge` is given)."""
    from codec.bundle import bundle_in_memory, load_bundle, make_manifest, write_bundle
    from codec.evaluate import evaluate

    codec.eval()
    bake(codec.encoder)  # no-op unless --int8-aware: the snapped weights become the plain ones
    codec.quantizer.freeze()
    centres = codec.quantizer.centres().detach().numpy()
    out = recipe.out
    extra = {"train_seconds": round(train_seconds, 1), "backbone_command": record.get("command"),
             "backbone_seed": record.get("seed"), "backbone_train_seconds": round(record.get("train_seconds", 0), 1),
             **(extra_fields or {})}
    manifest = make_manifest(out.stem, record, codec.config, centres, command, recipe.seed, extra=extra)
    bundle = bundle_in_memory(manifest, backbone.state_dict(), codec.state_dict())
    log(f"measuring {out.name} ({bundle!r}) on {test.name}")
    figures = evaluate(bundle, test, [0.0, 1e-3, 1e-2, 5e-2, 1e-1], ["iid"], make_errors, seeds=3, log=log)
    manifest["metrics"] = {k: figures[k] for k in ("data", "count", "payload_bytes", "backbone_accuracy", "results")}
    warning = gap_warning(figures, recipe, (extra_fields or {}).get("stage2_epochs"))
    if warning:
        manifest["warnings"] = [warning]
    edge = export_edge(bundle) if export_edge is not None else None
    write_bundle(out, manifest, backbone.state_dict(), codec.state_dict(), edge_onnx=edge)
    written = load_bundle(out)   # it reads back, bound to the weights that were measured
    if written.fingerprint != bundle.fingerprint or written.edge_onnx != edge:
        raise RuntimeError(f"{out} does not read back as the bundle that was measured")
    log(f"saved {out}: backbone {figures['backbone_accuracy']:.4f}, "
        + ", ".join(f"BER {r['ber']:g}: {r['accuracy']:.4f}" for r in figures["results"])
        + (f"; edge.onnx {len(edge)} B" if edge is not None else ""))
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    return out


def gap_warning(figures: dict, recipe: CodecRecipe, stage2_epochs: int | None) -> str | None:
    """A sentence when the codec at BER 0 trails its backbone by more than GAP_WARN, naming the fix."""
    clean = next((r["accuracy"] for r in figures["results"] if r["ber"] == 0), None)
    if clean is None or figures["backbone_accuracy"] - clean <= GAP_WARN:
        return None
    steps = recipe.stage2_steps
    return (f"the codec at BER 0 ({clean:.2%}) trails its backbone ({figures['backbone_accuracy']:.2%}) by "
            f"{100 * (figures['backbone_accuracy'] - clean):.1f} points (more than {100 * GAP_WARN:.0f}): train "
            f"stage 2 longer, e.g. --stage2-steps {4 * steps} (this run: {stage2_epochs} epochs), or widen the "
            f"decoder (--dec-hidden)")
