"""`snn bench accuracy`: accuracy vs BER vs bytes on air, SemanticNN and the baselines side by side.

Same images, same channel: every method's bytes cross `channel.bit_errors` (i.i.d. or Gilbert–Elliott
at the same mean BER, burst 8 bits) with a seed derived from (channel, BER, method), and every
byte on the uplink is counted, retransmissions and headers included (see `bench.delivery`).

Methods (rows):

- ``semanticnn`` (the shipped bundle) and ablation bundles found in ``codec/zoo`` (names
  ``*layer3*``, ``fmnist_*no_ber*``, ``*no_xai*``, ``*binary*``) or given with --ablation NAME=PATH; ``deepcod``,
  the DeepCOD-style codec of `bench.deepcod` (same encoder budget, no channel in training). They
  send v2 frames (docs/PROTOCOL.md): header copies as `--header-copies auto` settles on at the
  BER, each a 12-byte BCH-protected block (device id, counter, 32-bit MIC), then the encrypted
  packed symbols; a transmission whose header is lost is resent (a new counter, the long
  counter's 2 bytes more per block, <= cap); the edge unpacks the body with its bit errors, marks
  symbols of lost fragments erased, and is told the BER its header decoding measured, pooled
  over the run (what its per-device smoothing converges to). Every one of those bytes counts.
- ``feat8-*``: uniform 8-bit quantization of the float split features (per-image min and max as
  two float32, then C·H·W bytes), no learning; sent ``plain`` (SemanticNN framing, errors land in
  the features) and with ``arq``.
- bit-level offloading of the image: ``raw``, ``png``, ``jpeg<q>``, each with ``arq`` (CRC-32,
  retransmit until correct, cap 8 attempts per fragment: hitting the cap fails the inference),
  ``rs<k>`` (Reed–Solomon RS(255,k) FEC, no retransmission: an uncorrectable fragment fails the
  inference) and ``plain`` (no CRC, no ARQ: the bytes arrive with their errors; a raw image is
  classified as it is, a PNG/JPEG that still decodes is classified, one that does not fails).
  The ``*-plain`` rows run every corrupted image through an image decoder and the whole float
  backbone; ``--side-count N`` limits them to the first N test images to save time (each row
  records its ``count``; compare such rows only with care, a subset has its own accuracy).
  An image that arrives intact is classified by the float backbone (its accuracy on that
  source).
- ``semanticnn-header-oracle`` (diagnostic, not a method): the shipped codec as if its frame
  header were never lost, to show how much of SemanticNN's loss at high BER is the header's.
- ``device-only``: the whole float model on the device, no channel; bytes = log2(classes)/8, the
  answer itself.

`ratio` of a row = its bytes on air / SemanticNN's at the same channel and BER. The bar check
(`bars`) finds, at i.i.d. BER 1e-2, the cheapest bit-level row within 2 points of SemanticNN's
accuracy and states the ratio.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench import delivery
from bench.sources import Source, decode_all, default_sources, encode_all
from codec.evaluate import device_symbols, edge_predict
from codec.wire.frame import header_copies_for

BERS = (0.0, 1e-4, 1e-3, 1e-2, 5e-2, 1e-1)
CHANNELS = ("iid", "ge")
BURST = 8.0
LINK = "lora-sf7"
CAP = delivery.DEFAULT_CAP
QUICK_COUNT = 300
PLAIN_COUNT = None  # images for the decode-and-classify `*-plain` rows (None: all)
ZOO = Path(__file__).resolve().parent.parent / "codec" / "zoo"
BENCH_ZOO = Path(__file__).resolve().parent / "zoo"
ABLATION_PATTERNS = {"semanticnn-layer3": ("layer3",),
                     "semanticnn-no-ber": ("no_ber", "nober", "no-ber"),
                     "semanticnn-no-xai": ("no_xai", "noxai", "no-xai"),
                     "semanticnn-binary": ("binary",)}


def _progress(iterable, total: int, desc: str):
    from codec.training.common import progress
    return progress(iterable, total, desc)


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


@dataclass
class Classifier:
    """The float backbone (with input normalisation) of the bundle: images -> labels."""

    bundle: object
    batch_size: int = 500

    @torch.inference_mode()
    def images(self, images: np.ndarray) -> np.ndarray:
        from codec.training.common import to_tensor
        out = []
        for i in range(0, len(images), self.batch_size):
            x = to_tensor(images[i:i + self.batch_size])
            out.append(self.bundle.backbone(self.bundle.normalise(x)).argmax(1).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    @torch.inference_mode()
    def features(self, images: np.ndarray) -> np.ndarray:
        from codec.training.common import to_tensor
        out = []
        for i in range(0, len(images), self.batch_size):
            x = to_tensor(images[i:i + self.batch_size])
            out.append(self.bundle.backbone.head(self.bundle.normalise(x)).numpy())
        return np.concatenate(out)

    @torch.inference_mode()
    def tail(self, feats: np.ndarray) -> np.ndarray:
        """Split features -> labels: every backbone stage after the split (bridge included), as an
        edge that receives raw features must run them."""
        bb = self.bundle.backbone
        out = []
        for i in range(0, len(feats), self.batch_size):
            out.append(bb.tail(bb.bridge(torch.from_numpy(feats[i:i + self.batch_size]))).argmax(1).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- uniform 8-bit features

def feat8_encode(feats: np.ndarray) -> list[bytes]:
    """Per image: float32 min, float32 max, then round((f - min) / (max - min) * 255) as bytes."""
    flat = feats.reshape(len(feats), -1).astype(np.float32)
    lo, hi = flat.min(1), flat.max(1)
    scale = np.where(hi > lo, hi - lo, 1.0)
    q = np.clip(np.rint((flat - lo[:, None]) / scale[:, None] * 255), 0, 255).astype(np.uint8)
    head = np.stack([lo, hi], 1).astype(">f4").view(np.uint8).reshape(len(feats), 8)
    return [h.tobytes() + r.tobytes() for h, r in zip(head, q)]


def feat8_decode(messages: list[bytes], shape) -> np.ndarray:
    n = len(messages)
    buf = np.frombuffer(b"".join(messages), dtype=np.uint8).reshape(n, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        lohi = buf[:, :8].copy().view(">f4").astype(np.float64)
        lohi = np.nan_to_num(lohi, nan=0.0, posinf=1e6, neginf=-1e6).clip(-1e6, 1e6)
    q = buf[:, 8:].astype(np.float32) / 255.0
    f = lohi[:, :1] + q * (lohi[:, 1:2] - lohi[:, :1])
    return f.astype(np.float32).reshape(n, *shape)


# --------------------------------------------------------------------------- learned codecs

@dataclass
class Codec:
    """A learned codec to benchmark: a name and a bundle-like object (device/edge halves)."""

    name: str
    bundle: object
    source: str


def find_ablations(extra: dict[str, str] | None = None) -> list[tuple[str, Path]]:
    found: dict[str, Path] = {}
    for path in sorted(ZOO.glob("*.snn")):
        stem = path.stem.lower()
        for name, keys in ABLATION_PATTERNS.items():
            if any(k in stem for k in keys) and name not in found:
                found[name] = path
    for name, path in (extra or {}).items():
        found[name] = Path(path)
    return sorted(found.items())


def semantic_rows(codec: Codec, images, labels, model, rng, mtu: int, cap: int, clean_cache: dict,
                  header_t: int = delivery.FRAME_HEADER_T, header_copies: int = 1) -> dict:
    """One learned codec at one channel setting: real frames, header losses, body errors.

    `header_copies` is what a device with `--header-copies auto` settles on at this BER.
    """
    from codec.wire.packing import erased_symbols, pack_symbols, unpack_symbols

    b = codec.bundle
    key = codec.name
    if key not in clean_cache:
        clean_cache[key] = device_symbols(b, images)
    symbols = clean_cache[key]
    packed = pack_symbols(symbols, b.levels, gray=b.gray)
    messages = [row.tobytes() for row in packed]
    tr = delivery.header_only(model, rng, messages, mtu, cap, t=header_t, copies=header_copies)
    header_bits = int(tr.header_bits.sum())
    ber_est = float(tr.header_flips.sum()) / header_bits if header_bits else 0.0
    ok = tr.delivered
    rx_bytes = np.zeros_like(packed)
    erased_b = np.zeros(packed.shape, dtype=bool)
    for i in np.flatnonzero(ok):
        rx_bytes[i] = np.frombuffer(tr.received[i], dtype=np.uint8)
        erased_b[i] = tr.erased[i]
    rx = unpack_symbols(rx_bytes, b.levels, b.n_symbols, gray=b.gray)
    erased = erased_symbols(erased_b, b.levels, b.n_symbols)
    edge = b.edge_half()
    conditioned = _conditioned(b)
    pred = np.full(len(labels), -1)
    if conditioned:
        idx = np.flatnonzero(ok)
    else:  # the decoder ignores BER: images whose symbols arrived intact keep their clean answer
        ck = key + "/clean_pred"
        if ck not in clean_cache:
            clean_cache[ck] = edge_predict(b, symbols, 0.0, batch_size=500, edge=edge)
        same = ok & (rx == symbols).all(1) & ~erased.any(1)
        pred[same] = clean_cache[ck][same]
        idx = np.flatnonzero(ok & ~same)
    if idx.size:
        pred[idx] = edge_predict(b, rx[idx], ber_est, erased=erased[idx], batch_size=500, edge=edge)
    return {"accuracy": float((pred == labels).mean()), "bytes_on_air": float(tr.bytes_on_air.mean()),
            "delivered": float(ok.mean()), "packets": float(tr.packets.mean()), "ber_estimate": ber_est,
            "payload_bytes": int(packed.shape[1])}


def _deepcod(deepcod, bundle, quick: bool, train_minutes: float, log) -> list[Codec]:
    """The DeepCOD-style codec matching `bundle`: the cached one, else trained now (full runs only)."""
    from bench.deepcod import DEFAULT_PATH, load_deepcod, train_deepcod
    from snn.errors import BundleError

    path = DEFAULT_PATH if deepcod == "auto" else Path(deepcod)
    try:
        return [Codec("deepcod", load_deepcod(path, bundle), str(path))]
    except (BundleError, OSError) as exc:
        reason = str(exc) if path.is_file() else f"no DeepCOD-style codec at {path}"
    if quick or deepcod != "auto" or train_minutes <= 0:
        log(f"deepcod row skipped: {reason}")
        return []
    log(f"{reason}; training one now ({train_minutes:g} min budget) into {path}")
    train_deepcod(bundle, path, minutes=train_minutes,
                  command=f"run_accuracy (snn bench, cached DeepCOD-style codec missing), {train_minutes:g} min")
    return [Codec("deepcod", load_deepcod(path, bundle), str(path))]


def _conditioned(bundle) -> bool:
    cfg = getattr(bundle, "config", None) or {}
    cfg = cfg.get("codec", cfg)
    return bool(cfg.get("ber_conditioning", True))


# --------------------------------------------------------------------------- the benchmark

def _model(channel: str, ber: float, burst: float):
    from channel.bit_errors import make_error_model
    return make_error_model(channel, ber=ber, burst=burst if channel == "ge" else None)


def run_accuracy(bundle_path=None, quick: bool = False, count: int | None = None, side_count: int | None = None,
                 bers=BERS, channels=CHANNELS, link: str = LINK, cap: int = CAP, burst: float = BURST,
                 qualities=None, rs_rates=None, ablations: dict[str, str] | None = None,
                 deepcod: str | Path | None = "auto", train_minutes: float = 6.0, seed: int = 0,
                 threads: int | None = None, log=print) -> dict:
    """Run the accuracy benchmark; returns the JSON-ready dict (`rows` is the contract)."""
    from channel.links import get_link
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset

    t_start = time.time()
    if threads:
        torch.set_num_threads(threads)
    if quick:
        count = count or QUICK_COUNT
        qualities = qualities or (10, 50, 90)
        rs_rates = rs_rates or ("rs223", "rs127")
    qualities = tuple(qualities or (10, 30, 50, 75, 90))
    rs_rates = tuple(rs_rates or delivery.RS_RATES)
    data = load_dataset("fmnist:test")
    data = data.take(count) if count else data
    n = len(data)
    side_n = min(n, side_count or PLAIN_COUNT or n)
    images, labels = data.images, data.labels
    shape = images.shape[1:]
    mtu = get_link(link).mtu
    bundle = load_bundle(bundle_path)
    clf = Classifier(bundle)
    n_classes = len(bundle.classes)

    codecs = [Codec("semanticnn", bundle, str(bundle_path or "shipped default bundle"))]
    for name, path in find_ablations(ablations):
        try:
            codecs.append(Codec(name, load_bundle(path), str(path)))
        except Exception as exc:  # noqa: BLE001 - a broken ablation must not sink the benchmark
            log(f"skipping ablation {name} ({path}): {exc}")
    if deepcod:
        codecs += _deepcod(deepcod, bundle, quick, train_minutes, log)

    log(f"accuracy benchmark: {n} {data.name} images, link {link} (MTU {mtu} B), channels {list(channels)}, "
        f"BERs {list(bers)}, codecs {[c.name for c in codecs]}")
    # clean answers of every image source
    sources: list[Source] = default_sources(qualities)
    src_msgs, src_len, src_correct = _clean_answers(sources, images, labels, clf)
    backbone_acc = float(src_correct["raw"].mean())
    feats = clf.features(images)
    fshape = feats.shape[1:]
    f8 = feat8_encode(feats)
    f8_correct = clf.tail(feat8_decode(f8, fshape)) == labels
    clean_cache: dict = {}

    rows = []

    def add(method, family, channel, ber, accuracy, bytes_on_air, count_, **extra):
        rows.append({"method": method, "family": family, "channel": channel, "ber": float(ber),
                     "accuracy": round(float(accuracy), 5), "bytes_on_air": round(float(bytes_on_air), 2),
                     "count": int(count_), **extra})

    settings = [(c, b) for c in channels for b in bers]
    for channel, ber in _progress(settings, len(settings), "channel settings"):
        def model(channel=channel, ber=ber):
            return _model(channel, ber, burst)

        def rng(*name, channel=channel, ber=ber):
            return np.random.default_rng(_seed(seed, channel, ber, *name))

        _learned_rows(add, codecs, images, labels, model, rng, mtu, cap, clean_cache, channel, ber)
        _image_rows(add, sources, src_msgs, src_len, src_correct, rs_rates, model, rng, mtu, cap, side_n,
                    clf, labels, shape, channel, ber)
        _feature_rows(add, f8, f8_correct, fshape, model, rng, mtu, cap, side_n, clf, labels, channel, ber)
        add("device-only", "reference", channel, ber, backbone_acc, math.log2(n_classes) / 8, n,
            note="whole float model on the device, no channel; bytes = the answer")

    _add_ratios(rows)
    result = {
        "benchmark": "accuracy", "rows": rows, "bars": check_bars(rows), "equal_accuracy": equal_accuracy(rows),
        "config": {"data": data.name, "count": n, "side_count": side_n, "quick": quick, "link": link, "mtu": mtu,
                   "channels": list(channels), "bers": [float(b) for b in bers], "ge_burst_bits": burst,
                   "arq_cap": cap, "pilot_bytes": 0, "frame_header_bytes": delivery.FRAME_HEADER,
                   "baseline_header_bytes": delivery.HEADER_FIELDS, "crc32_bytes": delivery.CRC32_BYTES,
                   "rs_rates": {r: f"RS(255,{255 - delivery.RS_RATES[r]})" for r in rs_rates},
                   "jpeg_qualities": list(qualities), "seed": seed,
                   "codecs": {c.name: c.source for c in codecs},
                   "bundle_fingerprint": bundle.fingerprint.hex(), "backbone_accuracy": backbone_acc,
                   "bundle_name": getattr(bundle, "name", None),
                   "bundle_command": (getattr(bundle, "manifest", None) or {}).get("command"),
                   "threads": torch.get_num_threads()},
        "source_bytes": {k: float(v.mean()) for k, v in src_len.items()} | {"feat8": float(len(f8[0]))},
        "seconds": round(time.time() - t_start, 1),
    }
    return result


def _clean_answers(sources, images: np.ndarray, labels: np.ndarray, clf) -> tuple[dict, dict, dict]:
    """Per image source: its messages, their lengths, and which images the backbone gets right from
    the decoded (lossy or not) image on a clean link."""
    shape = images.shape[1:]
    src_msgs, src_len, src_correct = {}, {}, {}
    for s in _progress(sources, len(sources), "sources"):
        msgs = encode_all(s, images)
        dec, ok = decode_all(s, msgs, shape)
        src_msgs[s.name] = msgs
        src_len[s.name] = np.array([len(m) for m in msgs])
        if s.kind == "png" and "raw" in src_correct and ok.all() and np.array_equal(dec, images):
            src_correct[s.name] = src_correct["raw"].copy()  # lossless: the same answers as the raw image
        else:
            src_correct[s.name] = ok & (clf.images(dec) == labels)
    return src_msgs, src_len, src_correct


def _learned_rows(add, codecs, images, labels, model, rng, mtu, cap, clean_cache, channel, ber) -> None:
    """Every learned codec in real v2 frames, plus the header-oracle diagnostic of the shipped one."""
    n = len(images)
    for c in codecs:
        r = semantic_rows(c, images, labels, model(), rng(c.name), mtu, cap,
                          clean_cache.setdefault(c.name + f"/{n}", {}), header_copies=header_copies_for(ber))
        add(c.name, "learned", channel, ber, r.pop("accuracy"), r.pop("bytes_on_air"), n, **r)
        if c.name == "semanticnn" and ber > 0:
            # diagnostic: the same codec if its frame header were never lost (not a real method)
            r = semantic_rows(c, images, labels, model(), rng(c.name, "oracle"), mtu, cap,
                              clean_cache.setdefault(c.name + f"/{n}", {}), header_t=10 ** 6)
            add("semanticnn-header-oracle", "diagnostic", channel, ber, r.pop("accuracy"), r.pop("bytes_on_air"),
                n, note="diagnostic: header assumed never lost; shows what the frame header costs", **r)


def _image_rows(add, sources, src_msgs, src_len, src_correct, rs_rates, model, rng, mtu, cap, side_n,
                clf, labels, shape, channel, ber) -> None:
    """The image itself (raw, PNG, JPEG) with ARQ, with Reed-Solomon, and plain (no CRC, no ARQ)."""
    n = len(labels)
    for name in src_msgs:
        tr = delivery.arq(model(), rng(name, "arq"), src_len[name], mtu, cap)
        add(f"{name}-arq", "bit-level", channel, ber, (tr.delivered & src_correct[name]).mean(),
            tr.bytes_on_air.mean(), n, delivered=float(tr.delivered.mean()), packets=float(tr.packets.mean()))
        for rate in rs_rates:
            tr = delivery.rs(model(), rng(name, rate), src_len[name], mtu, delivery.RS_RATES[rate])
            add(f"{name}-{rate}", "bit-level", channel, ber, (tr.delivered & src_correct[name]).mean(),
                tr.bytes_on_air.mean(), n, delivered=float(tr.delivered.mean()), packets=float(tr.packets.mean()))
        # plain: no CRC, no ARQ, the bytes arrive with their errors
        msgs = src_msgs[name][:side_n]
        tr = delivery.header_only(model(), rng(name, "plain"), msgs, mtu, cap)
        src = next(s for s in sources if s.name == name)
        intact = np.array([r == m for r, m in zip(tr.received, msgs)])
        correct = intact & src_correct[name][:side_n]
        todo = np.flatnonzero(tr.delivered & ~intact)
        if todo.size:
            dec, ok = decode_all(src, [tr.received[i] for i in todo], shape)
            pred = np.full(todo.size, -1)
            if ok.any():
                pred[ok] = clf.images(dec[ok])
            correct[todo] = pred == labels[todo]
        add(f"{name}-plain", "bit-level", channel, ber, correct.mean(), tr.bytes_on_air.mean(), side_n,
            delivered=float(tr.delivered.mean()), packets=float(tr.packets.mean()))


def _feature_rows(add, f8, f8_correct, fshape, model, rng, mtu, cap, side_n, clf, labels, channel, ber) -> None:
    """The float split features quantized uniformly to 8 bits, with ARQ and plain."""
    n = len(labels)
    tr = delivery.arq(model(), rng("feat8", "arq"), np.full(n, len(f8[0])), mtu, cap)
    add("feat8-arq", "features", channel, ber, (tr.delivered & f8_correct).mean(), tr.bytes_on_air.mean(), n,
        delivered=float(tr.delivered.mean()), packets=float(tr.packets.mean()))
    tr = delivery.header_only(model(), rng("feat8", "plain"), f8[:side_n], mtu, cap)
    correct = np.zeros(side_n, dtype=bool)
    got = np.flatnonzero(tr.delivered)
    if got.size:
        correct[got] = clf.tail(feat8_decode([tr.received[i] for i in got], fshape)) == labels[got]
    add("feat8-plain", "features", channel, ber, correct.mean(), tr.bytes_on_air.mean(), side_n,
        delivered=float(tr.delivered.mean()), packets=float(tr.packets.mean()))


def _add_ratios(rows: list[dict]) -> None:
    ref = {(r["channel"], r["ber"]): r for r in rows if r["method"] == "semanticnn"}
    for r in rows:
        s = ref.get((r["channel"], r["ber"]))
        r["ratio"] = round(r["bytes_on_air"] / s["bytes_on_air"], 3) if s and s["bytes_on_air"] else None


def equal_accuracy(rows: list[dict], within: float = 0.02) -> list[dict]:
    """Per channel and BER: the cheapest bit-level row within `within` of SemanticNN's accuracy."""
    out = []
    for sem in (r for r in rows if r["method"] == "semanticnn"):
        close = [r for r in rows if r["channel"] == sem["channel"] and r["ber"] == sem["ber"]
                 and r["family"] == "bit-level" and r["accuracy"] >= sem["accuracy"] - within]
        c = min(close, key=lambda r: r["bytes_on_air"]) if close else None
        out.append({"channel": sem["channel"], "ber": sem["ber"], "semanticnn_accuracy": sem["accuracy"],
                    "semanticnn_bytes": sem["bytes_on_air"], "method": c and c["method"],
                    "accuracy": c and c["accuracy"], "bytes_on_air": c and c["bytes_on_air"],
                    "ratio": c and c["ratio"]})
    return out


def check_bars(rows: list[dict], channel: str = "iid", ber: float = 1e-2, within: float = 0.02,
               fail_ber: float = 1e-1) -> dict:
    """The issue's bars, computed from the rows (see the module doc)."""
    at = [r for r in rows if r["channel"] == channel and r["ber"] == ber]
    sem = next((r for r in at if r["method"] == "semanticnn"), None)
    out: dict = {"channel": channel, "ber": ber}
    if sem is None:
        return out
    bit = [r for r in at if r["family"] == "bit-level"]
    best = max(bit, key=lambda r: r["accuracy"]) if bit else None
    close = [r for r in bit if r["accuracy"] >= sem["accuracy"] - within]
    cheapest = min(close, key=lambda r: r["bytes_on_air"]) if close else None
    near_best = [r for r in bit if best and r["accuracy"] >= best["accuracy"] - within]
    cheap_best = min(near_best, key=lambda r: r["bytes_on_air"]) if near_best else None
    out.update({
        "semanticnn_accuracy": sem["accuracy"], "semanticnn_bytes": sem["bytes_on_air"],
        "cheapest_within_2_points_of_best_bit_level": cheap_best and {
            "method": cheap_best["method"], "accuracy": cheap_best["accuracy"],
            "bytes_on_air": cheap_best["bytes_on_air"], "ratio": cheap_best["ratio"]},
        "best_bit_level": best and {"method": best["method"], "accuracy": best["accuracy"],
                                    "bytes_on_air": best["bytes_on_air"]},
        "accuracy_at_least_every_bit_level": bool(best is None or sem["accuracy"] >= best["accuracy"]),
        "cheapest_within_2_points": cheapest and {"method": cheapest["method"], "accuracy": cheapest["accuracy"],
                                                  "bytes_on_air": cheapest["bytes_on_air"],
                                                  "ratio": cheapest["ratio"]},
        "ten_x_fewer_bytes": bool(cheapest is None or (cheapest["ratio"] or 0) >= 10),
    })
    no_fec = [r for r in rows if r["channel"] == channel and r["ber"] == fail_ber and r["family"] == "bit-level"
              and not any(r["method"].endswith(f"-{k}") for k in delivery.RS_RATES)]
    out["no_fec_at_1e-1"] = {r["method"]: r["accuracy"] for r in no_fec}
    out["no_fec_fail_at_1e-1"] = bool(no_fec) and all(r["accuracy"] < 0.5 * sem["accuracy"] or r["accuracy"] < 0.2
                                                      for r in no_fec)
    return out
