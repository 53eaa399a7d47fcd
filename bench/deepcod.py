"""A DeepCOD-style baseline codec (Yao et al., SenSys 2020): learned, trained by distillation, no channel.

Same encoder budget as the shipped SemanticNN bundle: the same split point, encoder, number of
symbols and levels, so exactly the same payload bytes. What differs is how it is trained and
coded, as DeepCOD does it: the decoder is an attention decoder (the same transposed-conv + IGDN +
channel-attention stages, with no channel-quality input), the whole codec is trained by
distillation from the float backbone (KL of softened logits, T = 4, plus MSE to the clean features
the decoder reconstructs) with **no channel in the loop** (clean symbols only, no erasures), and the symbols are
sent with plain binary codes (no Gray, no BER conditioning). The device head is frozen, so the
split features of the training images are computed once (no augmentation) and the codec trains
on them: minutes on 2 CPU cores.

    python -m bench.deepcod [--bundle B] [--epochs 6] [--count 20000] [--minutes 12] [-o bench/zoo/deepcod_fmnist.pt]

writes the checkpoint the benchmark uses; the exact command, seed, time and clean test accuracy
are stored inside it and in the JSON beside it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT_PATH = Path(__file__).resolve().parent / "zoo" / "deepcod_fmnist.pt"
FORMAT = "snn-bench-deepcod"


class DeepCODCodec:
    """Bundle-like wrapper: device/edge halves and the attributes the benchmark reads."""

    def __init__(self, codec, bundle, record: dict | None = None):
        self.codec = codec.eval()
        self.bundle = bundle
        self.backbone = bundle.backbone
        self.normalise = bundle.normalise
        self.levels = int(codec.config["levels"])
        self.gray = bool(codec.config["gray"])
        self.n_symbols = int(codec.n_symbols)
        self.config = dict(codec.config)
        self.record = record or {}

    def device_half(self):
        from codec.model.semantic_codec import DeviceHalf
        return DeviceHalf(self.normalise, self.backbone, self.codec).eval()

    def edge_half(self):
        from codec.model.semantic_codec import EdgeHalf
        return EdgeHalf(self.backbone, self.codec).eval()


def deepcod_config(bundle) -> dict:
    cfg = dict(bundle.config["codec"] if "codec" in bundle.config else bundle.config)
    cfg["ber_conditioning"] = False
    cfg["gray"] = False
    return cfg


def train_deepcod(bundle, out: Path = DEFAULT_PATH, epochs: int = 6, minutes: float = 12.0, batch_size: int = 128,
                  lr: float = 2e-3, temperature: float = 4.0, feat_weight: float = 0.5, seed: int = 0,
                  count: int | None = 20000, eval_count: int = 2000, threads: int | None = None,
                  command: str | None = None) -> dict:
    from codec.datasets import load_dataset
    from codec.model.semantic_codec import SemanticCodec
    from codec.training.common import log, seed_everything, set_threads, to_tensor

    set_threads(threads)
    g = seed_everything(seed)
    train = load_dataset("fmnist:train").take(count)
    test = load_dataset("fmnist:test").take(eval_count)
    codec = SemanticCodec.from_config(deepcod_config(bundle))
    backbone = bundle.backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    norm = bundle.normalise
    # The device head is frozen: compute the split features (and the teacher's logits) once.
    t0 = time.time()
    x_all, n = to_tensor(train.images), len(train.labels)
    with torch.no_grad():
        feats = torch.cat([backbone.head(norm(x_all[i:i + 500])) for i in range(0, n, 500)])
        # what the decoder reconstructs: the split features, or a later stage's (bundle trained with --decode-to)
        targets = torch.cat([backbone.bridge(feats[i:i + 500]) for i in range(0, n, 500)])
        teachers = torch.cat([backbone.tail(targets[i:i + 500]) for i in range(0, n, 500)])
    log(f"deepcod: split features of {n} training images in {time.time() - t0:.0f}s")
    opt = torch.optim.Adam(codec.parameters(), lr=lr)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    step, stopped = 0, False
    for epoch in range(epochs):
        codec.train()
        order = torch.randperm(n, generator=g)
        tl = tn = 0.0
        for i in range(0, n, batch_size):
            pick = order[i:i + batch_size]
            f, target, teacher = feats[pick], targets[pick], teachers[pick]
            z = codec.encoder(f)
            values, _, _ = codec.quantizer(z)
            values = values.reshape(len(f), -1)
            fhat = codec.decode(values, torch.ones_like(values), torch.zeros(len(f)))
            logits = backbone.tail(fhat)
            kd = F.kl_div(F.log_softmax(logits / temperature, 1), F.softmax(teacher / temperature, 1),
                          reduction="batchmean") * temperature ** 2
            loss = kd + feat_weight * F.mse_loss(fhat, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tl += float(loss.detach()) * len(f)
            tn += len(f)
            if time.time() - t0 > minutes * 60:
                stopped = True
                break
        log(f"deepcod epoch {epoch + 1}/{epochs} loss {tl / max(tn, 1):.4f} steps {step}/{steps} "
            f"elapsed {time.time() - t0:.0f}s")
        if stopped:
            log(f"time budget of {minutes} min reached after {step} steps")
            break
    codec.quantizer.freeze()
    codec.eval()
    wrapped = DeepCODCodec(codec, bundle)
    from codec.evaluate import device_symbols, edge_predict
    sym = device_symbols(wrapped, test.images)
    acc = float((edge_predict(wrapped, sym, 0.0, batch_size=500) == test.labels).mean())
    record = {"format": FORMAT, "config": codec.config, "state_dict": codec.state_dict(), "train_images": n,
              "clean_test_images": len(test.labels),
              "bundle_fingerprint": bundle.fingerprint.hex(), "clean_test_accuracy": acc, "epochs": epochs,
              "steps": step, "steps_planned": steps, "stopped_by_time_budget": stopped, "seed": seed,
              "train_seconds": round(time.time() - t0, 1), "command": command,
              "loss": f"KL(T={temperature}) + {feat_weight} MSE(features); no channel, binary codes"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, out)
    meta = {k: v for k, v in record.items() if k != "state_dict"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"saved DeepCOD-style codec to {out}: clean test accuracy {acc:.4f}")
    return meta


def load_deepcod(path: str | Path, bundle) -> DeepCODCodec:
    from codec.model.semantic_codec import SemanticCodec
    from snn.errors import BundleError

    try:
        record = torch.load(Path(path), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - unreadable, or a pickle naming more than tensors and plain data
        raise BundleError(f"{path} is not a DeepCOD-style codec file ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise BundleError(f"{path} is not a DeepCOD-style codec written by bench.deepcod")
    if record["bundle_fingerprint"] != bundle.fingerprint.hex():
        raise BundleError(f"{path} was trained on bundle {record['bundle_fingerprint']}, not on "
                          f"{bundle.fingerprint.hex()}: retrain it with 'python -m bench.deepcod'")
    codec = SemanticCodec.from_config(record["config"])
    codec.load_state_dict(record["state_dict"])
    return DeepCODCodec(codec, bundle, {k: v for k, v in record.items() if k != "state_dict"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deepcod", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=None, help="the SemanticNN bundle to match (default: shipped)")
    p.add_argument("-o", "--out", type=Path, default=DEFAULT_PATH)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--minutes", type=float, default=12.0, help="stop training after this long")
    p.add_argument("--count", type=int, default=20000, help="training images (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from codec.bundle import load_bundle
    bundle = load_bundle(args.bundle)
    command = "python -m bench.deepcod " + shlex.join(sys.argv[1:] if argv is None else argv)
    train_deepcod(bundle, args.out, epochs=args.epochs, minutes=args.minutes, seed=args.seed, count=args.count,
                  threads=args.threads, command=command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
