"""Payload steering by an active attacker who knows the plaintext, and what the integrity mode costs
(docs/PROTOCOL.md §4.6). Real frames of the shipped codec: the device's int8 encoder makes the
payload, `encode_inference` encrypts it (AES-CTR under a per-device key), the attacker XORs bits
into the *ciphertext* of the frame, the edge's `parse_data` authenticates and decrypts it and the
shipped edge half (onnxruntime) answers.

    python -m bench.steering [--victims 300] [--json PATH]

Attacks (each victim gets a target class other than the one the edge would have answered):

* ``exemplar``: the attacker flips the ciphertext bits where the victim's payload differs from the
  payload of one image of the target class, chosen offline with the public bundle as the one the
  edge answers the target with the highest confidence (CTR: the edge then decrypts exactly that
  payload).
* ``any-image``: the same with a random image of the target class (no use of the edge model).
* ``partial-F``: only a random fraction F of those bits flipped (an attacker who must stay
  below some number of flips).

Integrity mode (the device's MIC also covers the encrypted payload): the same frames are refused
(`auth`); its cost is that a frame with any payload bit error is refused too, so at a BER p a
transmission is accepted with probability (1 − p)^(8·P) and answered exactly (its payload is
clean), paid for in resends. Measured here on real frames with i.i.d. flips on the whole frame.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from codec.wire.frame import BLOCK_BYTES, encode_inference, parse_data
from snn.errors import FrameError

KEY = bytes(range(16))


@dataclass
class _Peer:
    key: bytes
    fingerprint: bytes
    payload_bytes: int
    integrity: bool = False


def _bits(a: bytes, b: bytes) -> np.ndarray:
    """Positions (MSB first) of the bits where a and b differ."""
    diff = np.unpackbits(np.frombuffer(bytes(x ^ y for x, y in zip(a, b)), dtype=np.uint8))
    return np.flatnonzero(diff)


def _flip(frame: bytes, offset: int, positions: np.ndarray) -> bytes:
    out = np.frombuffer(frame, dtype=np.uint8).copy()
    bits = np.unpackbits(out)
    bits[offset * 8 + positions] ^= 1
    return np.packbits(bits).tobytes()


def run(victims: int = 300, seed: int = 0, bers=(1e-4, 1e-3, 3e-3, 1e-2), trials: int = 2000) -> dict:
    from codec.bundle_file import DEFAULT_BUNDLE
    from codec.datasets import load_dataset
    from device.encoder import OnnxEncoder
    from edge.codecs import load_codecs

    encoder = OnnxEncoder(DEFAULT_BUNDLE.with_suffix(".int8.onnx"))
    codec = next(iter(load_codecs(None)))
    info = encoder.info
    fp, size = info.fingerprint, info.payload_bytes
    rng = np.random.default_rng(seed)
    test = load_dataset("fmnist:test")
    train = load_dataset("fmnist:train")

    def payloads(images) -> list[bytes]:
        return [encoder.pack(s) for s in encoder.encode(images)]

    def answer(batch: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        got = codec.infer(batch, None, np.zeros(len(batch), dtype=np.float32))
        return got.labels, got.confidences

    # the attacker's library: 200 training images per class, with the edge's answer for each
    lib_idx = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), 200, replace=False) for c in range(10)])
    lib_pay = payloads(train.images[lib_idx])
    lib_lab, lib_conf = answer(lib_pay)
    lib_true = train.labels[lib_idx]
    exemplar = {}
    for c in range(10):
        ok = np.flatnonzero((lib_lab == c) & (lib_true == c))
        exemplar[c] = lib_pay[ok[np.argmax(lib_conf[ok])]]

    idx = rng.choice(len(test.labels), victims, replace=False)
    vic_pay = payloads(test.images[idx])
    clean, _ = answer(vic_pay)
    targets = (clean + rng.integers(1, 10, victims)) % 10
    peer = _Peer(KEY, fp, size)
    secure = _Peer(KEY, fp, size, integrity=True)

    def frame_of(payload: bytes, counter: int, integrity: bool) -> bytes:
        (frame,) = encode_inference(payload, key=KEY, device_id=7, fingerprint=fp, counter=counter, mtu=1400,
                                    integrity=integrity)
        return frame

    def received(frame: bytes, who) -> bytes | None:
        try:
            return parse_data(frame, lambda dev: [who], lambda dev, low: low).data
        except FrameError:
            return None

    rows = []
    plans = [("exemplar", 1.0, lambda t: exemplar[int(t)])]
    plans.append(("any-image", 1.0,
                  lambda t: lib_pay[int(rng.choice(np.flatnonzero(lib_true == t)))]))
    for frac in (0.25, 0.5, 0.75):
        plans.append((f"partial-{frac:g}", frac, lambda t: exemplar[int(t)]))
    for name, frac, pick in plans:
        for integrity in (False, True):
            got, flipped = [], []
            for i in range(victims):
                want = pick(targets[i])
                diff = _bits(vic_pay[i], want)
                if frac < 1.0:
                    diff = rng.choice(diff, int(round(frac * len(diff))), replace=False)
                flipped.append(len(diff))
                frame = _flip(frame_of(vic_pay[i], i, integrity), BLOCK_BYTES, diff)
                got.append(received(frame, secure if integrity else peer))
            ok = [g for g in got if g is not None]
            labels = answer(ok)[0] if ok else np.zeros(0, dtype=int)
            hit = int(sum(int(lab) == int(t) for lab, t in zip(labels, [t for t, g in zip(targets, got) if g])))
            rows.append({"attack": name, "integrity": integrity, "victims": victims, "accepted": len(ok),
                         "target_class": hit, "target_rate": round(hit / victims, 4),
                         "bits_flipped_median": int(np.median(flipped)), "payload_bits": info.payload_bits})

    # what integrity costs on a noisy link: accepted transmissions and accuracy of what is answered
    cost = []
    sub = rng.choice(len(test.labels), trials, replace=False)
    sub_pay = payloads(test.images[sub])
    truth = test.labels[sub]
    from channel.bit_errors import IIDModel
    for ber in (0.0, *bers):
        model = IIDModel(ber) if ber > 0 else None
        for integrity in (False, True):
            who = secure if integrity else peer
            data, took = [], []
            for i in range(trials):
                frame = frame_of(sub_pay[i], i, integrity)
                if model is not None:
                    frame = model.corrupt(np.frombuffer(frame, dtype=np.uint8), rng)[0].tobytes()
                got = received(frame, who)
                if got is not None:
                    data.append(got)
                    took.append(i)
            labels = answer(data)[0] if data else np.zeros(0, dtype=int)
            acc = float(np.mean(labels == truth[took])) if took else None
            accept = len(took) / trials
            cost.append({"ber": ber, "integrity": integrity, "accepted_per_transmission": round(accept, 4),
                         "accuracy_of_answered": None if acc is None else round(acc, 4),
                         "bytes_per_transmission": len(frame),
                         "bytes_per_answer": round(len(frame) / accept, 1) if accept else None})
    return {"bundle": str(DEFAULT_BUNDLE.name), "fingerprint": fp.hex(), "payload_bytes": size,
            "steering": rows, "integrity_cost": cost}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", type=int, default=300)
    ap.add_argument("--trials", type=int, default=2000, help="frames per BER for the integrity cost rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    res = run(args.victims, args.seed, trials=args.trials)
    for r in res["steering"]:
        print(f"{r['attack']:14s} integrity {'on ' if r['integrity'] else 'off'}  accepted {r['accepted']:4d}/"
              f"{r['victims']}  target class {r['target_class']:4d}/{r['victims']} ({r['target_rate']:.1%})  "
              f"bits flipped median {r['bits_flipped_median']}/{r['payload_bits']}")
    for r in res["integrity_cost"]:
        acc = "n/a" if r["accuracy_of_answered"] is None else f"{r['accuracy_of_answered']:.4f}"
        bpa = "n/a" if r["bytes_per_answer"] is None else f"{r['bytes_per_answer']:.1f}"
        print(f"BER {r['ber']:<7g} integrity {'on ' if r['integrity'] else 'off'}  accepted "
              f"{r['accepted_per_transmission']:.4f} per transmission  accuracy {acc}  bytes/answer {bpa}")
    print(f"({time.perf_counter() - t:.1f} s)", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
