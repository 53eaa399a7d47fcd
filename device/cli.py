"""`snn device run --encoder DIR/encoder.int8.onnx --to URL --data fmnist:test --count N [--json PATH]`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from snn.errors import SnnError

PRINT_EACH_UP_TO = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="device_command", metavar="ACTION")
    p = sub.add_parser("run", help="encode images and get labels from an edge over a transport",
                       description="Encode images with the int8 ONNX encoder, send the frames over a "
                                   "transport URL and wait for the edge's labels.")
    p.add_argument("--encoder", required=True, metavar="PATH", help="exported encoder (encoder.int8.onnx)")
    p.add_argument("--to", required=True, metavar="URL",
                   help="edge transport: udp://HOST:PORT, serial:///dev/ttyX?baud=N, sim://NAME?ber=P")
    p.add_argument("--data", default="fmnist:test", metavar="SPEC",
                   help="images: fmnist:test, cifar10:PATH:test, folder:PATH, each with an optional "
                        ":train|:test|:val suffix (no suffix: :test) (default fmnist:test)")
    p.add_argument("--count", type=int, default=100, metavar="N", help="inferences to run (default 100)")
    p.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N images")
    p.add_argument("--link", default="lora-sf7", metavar="NAME",
                   help="link model for time on air and the default MTU (lora-sf7, ble-1m, uart-115200, "
                        "802.15.4, ...; 'none' for neither). Default lora-sf7")
    p.add_argument("--mtu", type=int, default=None, help="bytes per frame (default: the link's MTU, else 1400)")
    p.add_argument("--key-file", metavar="FILE",
                   help="keys file (snn keys new): this device's 128-bit key and codec; its frame counter is "
                        "kept beside it in FILE.dev<ID>.state (docs/PROTOCOL.md §4)")
    p.add_argument("--device-id", type=int, default=1, help="this device's id in the keys file (default 1)")
    p.add_argument("--insecure", action="store_true",
                   help="no key file: use the public all-zero key (only with an edge run --insecure)")
    p.add_argument("--state", metavar="FILE",
                   help="frame-counter state file (default: beside --key-file; with --insecure and no "
                        "--state, counters start from the clock)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply (default 2)")
    p.add_argument("--retries", type=int, default=2,
                   help="resends of an unanswered inference, each under a new frame counter (default 2)")
    p.add_argument("--window", type=int, default=4, help="inferences in flight at once (default 4)")
    p.add_argument("--header-copies", default="auto", choices=["auto", "1", "3", "5"],
                   help="copies of the protected frame header (auto: from the BER the edge reports, "
                        "and more robust on each resend; default auto)")
    p.add_argument("--truth", action="store_true",
                   help="send the ground-truth label with each inference (test mode: the edge scores itself)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the summary and every inference here")
    p.add_argument("--verbose", action="store_true", help="print every inference even on long runs")
    p.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "device_command", None) != "run":
        raise SnnError("usage: snn device run --encoder PATH --to URL [--data SPEC] [--count N] [--json PATH]")
    from channel.transports import open_transport
    from device.client import DeviceClient
    from device.encoder import OnnxEncoder

    if args.count <= 0:
        raise SnnError("--count must be > 0")
    key, counters = device_identity(args)
    encoder = OnnxEncoder(args.encoder, threads=args.threads)
    info = encoder.info
    data = _images(args, info)
    labels = _truth_labels(data, info.classes)
    link = None
    if args.link and args.link.lower() != "none":
        from channel.links import get_link
        link = get_link(args.link)
    transport = open_transport(args.to)
    mtu = args.mtu or (link.mtu if link else 1400)
    if getattr(transport, "mtu", None):
        mtu = min(mtu, transport.mtu)
    on_result, bar = _progress(args, len(data), info.classes)
    try:
        client = DeviceClient(encoder, transport, key=key, counters=counters, mtu=mtu, link=link,
                              timeout=args.timeout, retries=args.retries, window=args.window,
                              send_truth=args.truth, on_result=on_result,
                              header_copies=args.header_copies if args.header_copies == "auto"
                              else int(args.header_copies))
    except SnnError:
        transport.close()
        raise
    if not args.quiet:
        print(f"device {args.device_id}: {encoder.path.name} ({info.quantization}, codec {info.fingerprint.hex()}, "
              f"{info.payload_bytes} B payload) -> {args.to}, MTU {mtu}"
              f"{', link ' + link.name if link else ''}, {len(data)} images of {data.name}", flush=True)
    interrupted = False
    try:
        client.run(data.images, labels)
    except KeyboardInterrupt:
        interrupted = True  # still print and save what was measured
        client.t_end = time.monotonic()
        client.count = len(data)
    finally:
        if bar is not None:
            bar.close()
        transport.close()
    summary = client.summary()
    summary.update({"encoder": str(args.encoder), "to": args.to, "data": data.name, "interrupted": interrupted})
    if args.json:
        _write_json(args.json, summary, client, info.classes)
    _print_summary(summary)
    for note in client.notes:
        print(f"snn device: note: {note}", file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt
    if client.fatal:
        raise SnnError(f"the edge at {args.to} refused this device: {client.fatal}")
    if summary["answered"] == 0:
        print(f"snn device: no reply from the edge at {args.to} ({summary['sent']} inference(s) sent, "
              f"each {1 + args.retries} time(s) with a {args.timeout:g} s timeout): is the edge running and "
              f"reachable?", file=sys.stderr)
        return 1
    return 0


def _images(args, info):
    """The --data images, converted to the encoder's input shape, from --offset, --count of them."""
    from codec.datasets import load_dataset

    h, w, c = info.input_shape
    data = load_dataset(args.data, shape=(c, h, w))  # an image folder is converted to what the encoder takes
    if args.offset:
        data = type(data)(data.name, data.images[args.offset:], data.labels[args.offset:], data.classes)
    data = data.take(args.count)
    if len(data) == 0:
        raise SnnError(f"{args.data} holds no images (after --offset {args.offset})")
    return data


def _progress(args, n: int, classes):
    """(on_result callback, tqdm bar or None): one line per inference for small runs, else a bar
    with the running accuracy on a terminal, else nothing."""
    show_each = not args.quiet and (args.verbose or n <= PRINT_EACH_UP_TO)
    bar = None
    if not args.quiet and not show_each and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=n, unit="inf", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    state = {"done": 0, "correct": 0, "scored": 0}

    def on_result(rec, client):
        state["done"] += 1
        if rec.correct is not None:
            state["scored"] += 1
            state["correct"] += int(rec.correct)
        acc = state["correct"] / state["scored"] if state["scored"] else None
        if show_each:
            print(_line(rec, classes, acc), flush=True)
        if bar is not None:
            bar.update(1)
            if acc is not None:
                bar.set_postfix(acc=f"{acc:.2%}", refresh=False)

    return on_result, bar


def _write_json(path, summary: dict, client, classes) -> None:
    """The summary, the class names and every inference (with its class name) as JSON."""
    name = lambda i: classes[i] if i is not None and 0 <= i < len(classes) else None  # noqa: E731
    record = dict(summary, classes=list(classes),
                  inferences=[dict(r.public(), class_name=name(r.label)) for r in client.records])
    Path(path).write_text(json.dumps(record, indent=1))


def device_identity(args) -> tuple:
    """(DeviceKey, CounterStore) from --key-file/--device-id, or the insecure all-zero key."""
    from codec.wire.crypto import ZERO_KEY
    from codec.wire.keys import CounterStore, DeviceKey, device_key, state_path

    if args.key_file and args.insecure:
        raise SnnError("--key-file and --insecure exclude each other")
    if not 0 <= args.device_id <= 0xFFFF:
        raise SnnError("--device-id must lie in 0..65535")
    if args.key_file:
        key = device_key(args.key_file, args.device_id)
        return key, CounterStore(args.state or state_path(args.key_file, args.device_id))
    if not args.insecure:
        raise SnnError("the device needs --key-file FILE --device-id ID (from 'snn keys new'), or --insecure "
                       "for an edge run with --insecure")
    start = 0 if args.state else (time.time_ns() // 16_000) & 0xFFFFFFFF
    return DeviceKey(args.device_id, ZERO_KEY, None), CounterStore(args.state, start=start)


def _truth_labels(data, classes: list[str]):
    """Labels in the encoder's class order, or None when they cannot be matched."""
    import numpy as np

    if not data.name.startswith("folder:"):
        return data.labels
    if not classes or any(c not in classes for c in data.classes):
        return None  # folder classes unknown to the codec: no ground truth
    remap = np.asarray([classes.index(c) for c in data.classes], dtype=np.int64)
    return remap[data.labels]


def _line(rec, classes: list[str], acc) -> str:
    name = lambda i: classes[i] if i is not None and 0 <= i < len(classes) else "?"  # noqa: E731
    air = f"air {rec.airtime_ms:8.2f} ms" if rec.airtime_ms is not None else ""
    head = (f"#{rec.index:<5d} ctr {rec.counter:<10d} enc {rec.encode_ms:6.3f} ms  {rec.bytes_on_air:4d} B/"
            f"{rec.frames} fr  {air}")
    if rec.status != "ok":
        return f"{head}  {rec.status.upper()}: {rec.error}"
    mark = "" if rec.correct is None else (" ok " if rec.correct else " NO ")
    truth = f" truth {name(rec.truth)}" if rec.truth is not None else ""
    running = f"  acc {acc:.2%}" if acc is not None else ""
    return (f"{head}  rtt {rec.rtt_ms:7.2f} ms  -> {rec.label} {name(rec.label):12s} ({rec.confidence:.2f})"
            f"{truth}{mark}{running}")


def _print_summary(s: dict) -> None:
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"\nanswered {s['answered']}/{s['count']} (lost {s['lost']}, errors {s['errors']}, "
          f"resends {s['resends']})  accuracy {acc}")
    print(f"encode p50 {fmt(s['encode_p50_ms'])} ms   rtt p50 {fmt(s['rtt_p50_ms'])} ms  p99 "
          f"{fmt(s['rtt_p99_ms'])} ms   {s['bytes_on_air_per_inference']} B in {s['frames_per_inference']} "
          f"frame(s) per inference" + (f", {s['airtime_ms_per_inference']:.2f} ms on air ({s['link']})"
                                        if s['airtime_ms_per_inference'] is not None else ""))
    print(f"peak RSS {s['peak_rss_bytes'] / 2**20:.1f} MiB   {s['inferences_per_s']} inferences/s")
