"""`snn train backbone`: train a float backbone (SGD+Nesterov or AdamW, cosine schedule).

Standard augmentation (random translation by 2 px, horizontal flip), label smoothing 0.1, batch
norm. The default schedule is at least 12 epochs and at least 3,000 steps (small data sets get
more epochs); the epoch kept is the one that scores best on a seeded validation split of the
training set (the test set is measured once, at the end). CUDA when present. One log line per epoch, a resumable checkpoint ``<out>.ckpt`` after each epoch, and the
final backbone file holds the weights plus everything needed to rebuild it (arch, kwargs, input
normalisation, classes, accuracy, command line, seed).
"""
from __future__ import annotations

import math
import shlex
import sys
import time
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from codec.model.backbones import build_backbone
from codec.training import distributed
from codec.training.common import (
    augment,
    batches,
    accuracy,
    channel_stats,
    epochs_for,
    load_split,
    log,
    pick_device,
    progress,
    rng_state,
    save_atomic,
    seed_everything,
    set_rng_state,
    set_threads,
    split_validation,
    to_tensor,
)
from snn.errors import BundleError, SnnError

BACKBONE_FORMAT = "snn-backbone"
BACKBONE_VERSION = 1
VAL_SEED = 0  # the validation split's seed, recorded so the codec holds out the same images


MIN_EPOCHS = 12      # the default schedule: at least this many epochs ...
MIN_STEPS = 3000     # ... and at least this many optimisation steps, so small data sets converge


def train_backbone(data: str, arch: str, out: Path, epochs: int | None = None, batch_size: int = 128,
                   optimizer: str = "sgd", lr: float | None = None, weight_decay: float = 5e-4,
                   width: float = 1.0, split: str | None = None, seed: int = 0, threads: int | None = None,
                   resume: bool = False, count: int | None = None, command: str | None = None,
                   holdout: float | None = None, split_seed: int = 0, device: str | None = "auto") -> dict:
    set_threads(threads)
    dev = pick_device(device)
    g = seed_everything(seed)
    dist = distributed.current()
    train, test = load_split(data, holdout, split_seed)
    train, test = train.take(count), test.take(count)
    train, val = split_validation(train, seed=VAL_SEED)
    mean, std = channel_stats(train.images)
    c, h, w = train.images.shape[3], train.images.shape[1], train.images.shape[2]
    kwargs = {"in_channels": c, "n_classes": len(train.classes), "width": width}
    if split:
        kwargs["split"] = split
    try:
        model = build_backbone(arch, **kwargs)
    except ValueError as exc:
        raise SnnError(str(exc)) from None
    model.to(dev)
    norm_mean = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
    norm_std = torch.tensor(std, device=dev).view(1, -1, 1, 1)
    xtr, ytr = to_tensor(train.images).to(dev), torch.from_numpy(train.labels).to(dev)
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    epochs = epochs if epochs is not None else epochs_for(MIN_STEPS, steps_per_epoch, MIN_EPOCHS)
    total = epochs * steps_per_epoch
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr or 0.1, momentum=0.9, nesterov=True,
                              weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr or 2e-3, weight_decay=weight_decay * 100)
    else:
        raise SnnError(f"unknown optimizer '{optimizer}': use sgd or adamw")
    warm = steps_per_epoch // 2
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    ckpt_path = out.with_name(out.name + ".ckpt")
    start = 0
    best = {"acc": -1.0, "epoch": 0, "state": None}
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        set_rng_state(g, ck["rng"])
        best = ck.get("best", best)
        start = ck["epoch"]
        log(f"resumed from {ckpt_path} after epoch {start}")
    score = lambda x, y: accuracy(lambda b: model((b - norm_mean) / norm_std), x, y, dev)  # noqa: E731
    log(f"backbone {arch}: {len(train)} training images ({len(val)} more held out for validation), "
        f"{epochs} epochs = {total} steps on {dev}")
    if dist.enabled:
        distributed.cross_rank_batch_norm(model)
    dist.broadcast_state(model)
    t0 = time.time()
    epoch_seconds = []
    for epoch in range(start, epochs):
        model.train()
        order_g, noise_g = dist.epoch_generators(g, seed, epoch)
        tl, tn = 0.0, 0
        te = time.time()
        for n_global, idx in progress(dist.shards(batches(len(xtr), batch_size, order_g)), steps_per_epoch,
                                      f"epoch {epoch + 1}/{epochs}"):
            idx = idx.to(dev)
            x = (augment(xtr[idx], noise_g) - norm_mean) / norm_std
            loss = F.cross_entropy(model(x), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            (loss * dist.share(len(idx), n_global)).backward()
            dist.sync_gradients(model.parameters())
            opt.step()
            sched.step()
            tl += loss.item() * len(idx)
            tn += len(idx)
        epoch_seconds.append(time.time() - te)
        tl, tn = dist.sum(tl, tn)
        model.eval()
        dist.broadcast_state(model)  # rank 0's batch-norm statistics everywhere: one model selected
        val_acc = score(val.images, val.labels) if len(val) else float("nan")
        if len(val) == 0 or val_acc >= best["acc"]:  # model selection on the validation split only
            best = {"acc": val_acc if len(val) else 0.0, "epoch": epoch + 1,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        log(f"backbone {arch} epoch {epoch + 1}/{epochs} loss {tl / tn:.4f} val_acc {val_acc:.4f} "
            f"lr {sched.get_last_lr()[0]:.4g} elapsed {time.time() - t0:.0f}s")
        save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "rng": rng_state(g), "epoch": epoch + 1, "best": best}, ckpt_path)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    acc = score(test.images, test.labels)
    model.cpu()
    record = {
        "format": BACKBONE_FORMAT, "version": BACKBONE_VERSION, "arch": arch, "kwargs": dict(kwargs, split=model.split),
        "state_dict": model.state_dict(), "input_shape": [c, h, w], "input_mean": mean, "input_std": std,
        "classes": list(train.classes), "data": data, "holdout": holdout, "split_seed": split_seed, "accuracy": acc,
        "val_accuracy": best["acc"], "best_epoch": best["epoch"], "val_seed": VAL_SEED, "epochs": epochs, "seed": seed,
        "command": command or shlex.join(sys.argv), "train_seconds": time.time() - t0,
        "world_size": dist.world_size, "epoch_seconds": epoch_seconds,
    }
    save_atomic(record, out)
    log(f"saved backbone to {out}: test accuracy {acc:.4f} (epoch {best['epoch']}, picked on validation "
        f"accuracy {best['acc']:.4f})")
    return record


def load_backbone_file(path: str | Path):
    """(model in eval mode, record) from a file written by `train_backbone`, or the backbone inside a
    bundle (.snn), so a codec can be retrained on a shipped bundle's backbone."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"backbone file {path} does not exist; make one with 'snn train backbone'")
    if _is_bundle(path):
        return _backbone_of_bundle(path)
    try:
        record = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise BundleError(f"{path} is not a backbone file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != BACKBONE_FORMAT:
        raise BundleError(f"{path} is not a backbone file written by 'snn train backbone'")
    if record.get("version") != BACKBONE_VERSION:
        raise BundleError(f"{path} is backbone format version {record.get('version')}; this version reads "
                          f"{BACKBONE_VERSION}: retrain it with 'snn train backbone'")
    model = build_backbone(record["arch"], **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    model.eval()
    return model, record


def _is_bundle(path: Path) -> bool:
    """A bundle is a zip with manifest.json at its top (torch.save files are zips too)."""
    try:
        with zipfile.ZipFile(path) as z:
            return "manifest.json" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _backbone_of_bundle(path: Path):
    from codec.bundle import load_bundle

    bundle = load_bundle(path)
    m, cfg = bundle.manifest, bundle.config["backbone"]
    record = {"format": BACKBONE_FORMAT, "version": BACKBONE_VERSION, "arch": cfg["arch"], "kwargs": cfg["kwargs"],
              "state_dict": bundle.backbone.state_dict(), "input_shape": list(bundle.input_shape),
              "input_mean": bundle.input_mean, "input_std": bundle.input_std, "classes": bundle.classes,
              "data": cfg.get("data"), "holdout": cfg.get("holdout"), "split_seed": cfg.get("split_seed", 0),
              "accuracy": cfg.get("accuracy"), "command": m.get("backbone_command"), "seed": m.get("backbone_seed"),
              "train_seconds": m.get("backbone_train_seconds") or 0.0, "from_bundle": str(path)}
    return bundle.backbone.eval(), record
