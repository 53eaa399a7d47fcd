"""`snn bench latency`: where the time of one inference goes, SemanticNN vs the best bit-level baseline.

Per inference (one image, batch 1, medians over repeated runs):

- device encode: SemanticNN = the int8 ONNX encoder (`export.pipeline.build_encoders`, the
  artefact `snn export` writes; min-max calibration, which changes the scales, not the graph or
  its cost) under onnxruntime with 1 thread, plus Gray packing and framing;
  the bit-level baseline = Pillow JPEG/PNG encode (or nothing for raw) plus CRC-32 or
  Reed–Solomon encoding (`reedsolo`) of its packets.
- time on air: the frames of a clean link (no retransmissions) through `channel.links`
  (`time_on_air_s` per frame, fragmented to each link's MTU): LoRa SF7 and SF10 at 125 kHz, BLE
  1M, UART 115200. Duty-cycle waits are not included (reported separately as `duty_wait_ms`).
- edge decode + tail: SemanticNN = parse and authenticate the frame, unpack, decoder + backbone
  tail as `snn edge serve` runs them (the bundle's verified ``edge.onnx`` on onnxruntime, 1 thread:
  the serve defaults `--engine onnx --threads 1`); the baseline = RS decode / CRC check, image
  decode and the whole float backbone (torch, 2 threads).

The best bit-level baseline is taken from the accuracy results when given (the highest accuracy
at i.i.d. BER 1e-2, ties to fewer bytes), else ``jpeg50-rs127``.
"""
from __future__ import annotations

import binascii
import statistics
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch

from bench import delivery
from codec.wire.frame import SPEC_VERSION as PROTOCOL_VERSION
from bench.sources import Source

LINKS = ("lora-sf7", "lora-sf10", "ble-1m", "uart-115200")
EDGE_ENGINE, EDGE_THREADS = "onnx", 1   # `snn edge serve`'s defaults (edge.server.ServeOptions)
DEFAULT_BASELINE = "jpeg50-rs127"


def _median_ms(fn, runs: int) -> float:
    for _ in range(min(5, runs)):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _parse_method(method: str) -> tuple[Source, str]:
    src, transport_name = method.rsplit("-", 1)
    if src == "raw":
        s = Source("raw", "raw")
    elif src == "png":
        s = Source("png", "png")
    else:
        s = Source(src, "jpeg", int(src[4:]))
    return s, transport_name


def best_baseline(accuracy: dict | None, channel: str = "iid", ber: float = 1e-2) -> str:
    if not accuracy:
        return DEFAULT_BASELINE
    cands = [r for r in accuracy["rows"] if r["family"] == "bit-level" and r["channel"] == channel
             and r["ber"] == ber and not r["method"].endswith("-plain")]
    if not cands:
        return DEFAULT_BASELINE
    return max(cands, key=lambda r: (r["accuracy"], -r["bytes_on_air"]))["method"]


def _fragments(n: int, room: int) -> list[int]:
    k, chunk = delivery.fragment_plan(np.array([n]), room)
    return [int(delivery.fragment_length(np.array([n]), chunk, i)[0]) for i in range(int(k[0]))]


def frame_sizes(method: str, n_bytes: int, mtu: int) -> list[int]:
    """Bytes of each frame on a clean link for a message of n bytes sent by `method`."""
    if method == "semanticnn":   # v2: one 12-byte header block (13 when fragmented), no pilots
        from codec.wire.frame import BLOCK_BYTES, FRAG_BLOCK_BYTES
        if BLOCK_BYTES + n_bytes <= mtu:
            return [BLOCK_BYTES + n_bytes]
        return [FRAG_BLOCK_BYTES + d for d in _fragments(n_bytes, mtu - FRAG_BLOCK_BYTES)]
    kind = method.rsplit("-", 1)[1]
    if kind == "arq":
        over = delivery.HEADER_FIELDS + delivery.CRC32_BYTES
        return [over + d for d in _fragments(n_bytes, mtu - over)]
    if kind == "plain":
        return [delivery.FRAME_HEADER + d for d in _fragments(n_bytes, mtu - delivery.FRAME_HEADER)]
    n_cw, nsym = delivery.rs_parity(delivery.RS_RATES[kind], mtu)
    over = delivery.HEADER_FIELDS + nsym
    return [over + d for d in _fragments(n_bytes, n_cw - over)]


def run_latency(bundle_path=None, accuracy: dict | None = None, baseline: str | None = None, quick: bool = False,
                links=LINKS, log=print) -> dict:
    """Device, air and edge time per inference on each link, SemanticNN beside the best bit-level
    baseline of the accuracy benchmark (medians of repeated single-image runs, clean link)."""
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset

    t0 = time.time()
    runs = 30 if quick else 200
    bundle = load_bundle(bundle_path)
    image = load_dataset("fmnist:test").take(50).images[:1]
    cal = load_dataset("fmnist:train").take(200 if quick else 1000).images
    baseline = baseline or best_baseline(accuracy)
    sem = _semanticnn_times(bundle, bundle_path, image, cal, runs)
    base = _baseline_times(bundle, image, baseline, runs)
    rows = _link_rows(links, (("semanticnn", bundle.payload_bytes, sem["device_ms"], sem["edge_ms"]),
                              (baseline, base["message_bytes"], base["device_ms"], base["edge_ms"])))
    return {"benchmark": "latency", "rows": rows, "baseline": baseline, "bundle_fingerprint": bundle.fingerprint.hex(),
            "baseline_parts_ms": {k: round(v, 3) for k, v in base["parts"].items()},
            "baseline_note": "Reed-Solomon coding runs in reedsolo, pure Python here; a C codec takes "
                             "microseconds, so the baseline's device and edge times are upper bounds",
            "encoder_int8_ms_1thread": round(sem["encode_ms"], 3), "calibration": sem["calibration"],
            "edge_engine": sem["edge_engine"], "edge_threads": EDGE_THREADS, "protocol": PROTOCOL_VERSION,
            "runs": runs, "note": f"clean link, batch 1, medians of {runs} runs; device = int8 ONNX encoder "
                                  f"on 1 thread (+ packing, keyed v{PROTOCOL_VERSION} frame); edge = frame "
                                  f"check + {sem['edge_engine']} edge half on {EDGE_THREADS} thread, as "
                                  f"`snn edge serve` runs it; baseline backbone = torch on 2 threads",
            "seconds": round(time.time() - t0, 1)}


def _semanticnn_times(bundle, bundle_path, image: np.ndarray, cal: np.ndarray, runs: int) -> dict:
    """Device: int8 ONNX encoder on 1 thread, packing and a keyed v2 frame (AES-CTR, CMAC, BCH);
    edge: frame parsing, unpacking, decoder + tail on the engine `snn edge serve` runs by default."""
    from codec.wire.frame import encode_inference, parse_data
    from codec.wire.packing import pack_symbols
    from edge.codecs import load_codecs
    from export.pipeline import build_encoders
    from export.verify import ort_session

    with tempfile.TemporaryDirectory() as tmp:
        _, int8_path, chosen = build_encoders(bundle, tmp, cal, None, method="minmax",
                                              log=lambda *_: None)
        sess = ort_session(int8_path, threads=1)
        name = sess.get_inputs()[0].name
        payload_bits = bundle.n_symbols * bundle.bits_per_symbol

        def device_sem():
            sym = sess.run(None, {name: image})[0]
            packed = pack_symbols(np.asarray(sym).reshape(1, -1).astype(np.int64), bundle.levels, gray=bundle.gray)[0]
            # a keyed device: AES-CTR, CMAC and the BCH header, as on the air
            return encode_inference(packed.tobytes(), key=bytes(range(16)), device_id=1,
                                    fingerprint=bundle.fingerprint, counter=1, mtu=222)

        encode_ms = _median_ms(lambda: sess.run(None, {name: image}), runs)
        device_ms = _median_ms(device_sem, runs)
        frames = device_sem()

    served = next(iter(load_codecs([bundle_path] if bundle_path else None, engine=EDGE_ENGINE,
                                   threads=EDGE_THREADS)))
    peer = SimpleNamespace(key=bytes(range(16)), fingerprint=bundle.fingerprint,
                           payload_bytes=(payload_bits + 7) // 8)
    ber = np.array([1e-2], np.float32)

    def edge_sem():
        opened = [parse_data(fr, lambda dev: [peer], lambda dev, low: low) for fr in frames]
        return served.infer([b"".join(f.data for f in opened)], None, ber)

    torch.set_num_threads(2)   # the baseline's torch backbone
    return {"encode_ms": encode_ms, "device_ms": device_ms, "edge_ms": _median_ms(edge_sem, runs),
            "calibration": chosen.get("method"), "edge_engine": served.engine.name}


def _baseline_times(bundle, image: np.ndarray, baseline: str, runs: int) -> dict:
    """The bit-level baseline: image codec + CRC-32 (ARQ) or Reed-Solomon on the device; decode,
    check and the whole backbone on the edge."""
    import reedsolo

    from bench.accuracy import Classifier

    src, kind = _parse_method(baseline)
    msg = src.encode(image[0])
    rs_codec = reedsolo.RSCodec(delivery.RS_RATES[kind]) if kind in delivery.RS_RATES else None
    coded = bytes(rs_codec.encode(msg)) if rs_codec is not None else msg
    clf = Classifier(bundle, batch_size=1)

    def device_base():
        m = src.encode(image[0])
        if rs_codec is not None:
            return bytes(rs_codec.encode(m))
        return binascii.crc32(m)

    def edge_base():
        m = bytes(rs_codec.decode(bytearray(coded))[0]) if rs_codec is not None else coded
        if rs_codec is None:
            binascii.crc32(m)
        img = src.decode(m, image.shape[1:])
        return clf.images(img[None])

    parts = {"image_encode_ms": _median_ms(lambda: src.encode(image[0]), runs),
             "image_decode_and_backbone_ms": _median_ms(lambda: clf.images(src.decode(msg, image.shape[1:])[None]),
                                                        runs)}
    if rs_codec is not None:
        parts["rs_encode_ms"] = _median_ms(lambda: rs_codec.encode(msg), runs)
        parts["rs_decode_ms"] = _median_ms(lambda: rs_codec.decode(bytearray(coded)), runs)
    return {"message_bytes": len(msg), "device_ms": _median_ms(device_base, runs),
            "edge_ms": _median_ms(edge_base, runs), "parts": parts}


def _link_rows(links, methods) -> list[dict]:
    """One row per (link, method): frames and bytes on air, device + air + edge time."""
    from channel.links import get_link

    rows = []
    for link_name in links:
        link = get_link(link_name)
        for method, n_bytes, dev, ed in methods:
            sizes = frame_sizes(method, n_bytes, link.mtu)
            air = 1e3 * sum(link.time_on_air_s(s) for s in sizes)
            wait = 1e3 * sum(link.wait_after_s(s) for s in sizes)
            rows.append({"method": method, "link": link_name, "frames": len(sizes), "bytes_on_air": sum(sizes),
                         "within_16_fragments": len(sizes) <= 16 if method == "semanticnn" else None,
                         "device_ms": round(dev, 3), "air_ms": round(air, 2), "edge_ms": round(ed, 3),
                         "total_ms": round(dev + air + ed, 2), "duty_wait_ms": round(wait, 1)})
    return rows
