"""`snn device run --encoder DIR/encoder.int8.onnx --to URL --data SPEC [--count N] [--json PATH] [--jsonl]`.

A thin shell over the Python API (`device.api.connect`): the flags are its arguments, `--data`
names a `device.sources` source (a data set, or live input: a watched folder, stdin, a camera).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from snn.errors import SnnError

PRINT_EACH_UP_TO = 50
DATASET_COUNT = 100          # inferences from a data set when --count is not given
LIVE_RECORDS_KEPT = 10_000   # a live run's summary percentiles and --json inferences: the last N


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from channel.links import LINK_FAMILIES
    from channel.transports import TRANSPORTS
    from codec.image_folder import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
    from device.sources import LIVE_HELP

    sub = parser.add_subparsers(dest="device_command", metavar="ACTION")
    p = sub.add_parser("run", help="encode images and get labels from an edge over a transport",
                       description="Encode images with the int8 ONNX encoder, send the frames over a "
                                   "transport URL and wait for the edge's labels.")
    p.add_argument("--encoder", required=True, metavar="PATH", help="exported encoder (encoder.int8.onnx)")
    p.add_argument("--to", required=True, metavar="URL",
                   help=f"edge transport: {TRANSPORTS.choices()}")
    p.add_argument("--data", default="fmnist:test", metavar="SPEC",
                   help="images: a data set (fmnist:test, cifar10:PATH:test, folder:PATH, each with an optional "
                        f":train|:test|:val suffix; no suffix: :test), or live input: {LIVE_HELP} "
                        "(default fmnist:test)")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help=f"inferences to run (default: {DATASET_COUNT} from a data set; live input runs until "
                        "its end, or until stopped with Ctrl-C or SIGTERM)")
    p.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N images (default 0)")
    p.add_argument("--jsonl", action="store_true",
                   help="write one JSON line per inference to stdout as it completes (the --json 'inferences' "
                        "fields); the other output goes to stderr (default off)")
    p.add_argument("--max-image-bytes", type=int, default=MAX_IMAGE_BYTES, metavar="N",
                   help="refuse a live image file or piped image over N bytes (default %(default)s)")
    p.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS, metavar="N",
                   help="refuse an image whose header promises more than N pixels, before decoding it "
                        "(default %(default)s)")
    p.add_argument("--link", default="lora-sf7", metavar="NAME",
                   help=f"link model for time on air and the default MTU: {LINK_FAMILIES.choices()} "
                        "(e.g. lora-sf7, ble-1m, uart-115200); 'none' for neither. Default lora-sf7")
    p.add_argument("--mtu", type=int, default=None, help="bytes per frame (default: the link's MTU, else 1400)")
    p.add_argument("--key-file", metavar="FILE",
                   help="keys file (snn keys new): this device's 128-bit key and codec; its frame counter is "
                        "kept beside it in FILE.dev<ID>.state (docs/PROTOCOL.md §4) (default: none, then --insecure "
                        "is required)")
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
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the summary and every inference here (default: not written)")
    p.add_argument("--verbose", action="store_true", help="print every inference even on long runs")
    p.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "device_command", None) != "run":
        raise SnnError("usage: snn device run --encoder PATH --to URL [--data SPEC] [--count N] [--json PATH]")
    from device.api import connect
    from device.sources import Limits, limited, open_source

    if args.count is not None and args.count <= 0:
        raise SnnError("--count must be > 0")
    if args.offset < 0:
        raise SnnError("--offset must be >= 0")
    if args.max_image_bytes <= 0 or args.max_image_pixels <= 0:
        raise SnnError("--max-image-bytes and --max-image-pixels must be > 0")
    limits = Limits(args.max_image_bytes, args.max_image_pixels)
    text = sys.stderr if args.jsonl else sys.stdout    # --jsonl keeps stdout for the JSON lines alone
    state = {"bar": None}
    dev = connect(args.to, encoder=args.encoder, key_file=args.key_file, device_id=args.device_id,
                  insecure=args.insecure, state=args.state, link=args.link, mtu=args.mtu,
                  header_copies=args.header_copies, timeout=args.timeout, retries=args.retries,
                  window=args.window, send_truth=args.truth, threads=args.threads, limits=limits,
                  on_result=lambda rec, client: state["on_result"](rec, client))
    info = dev.info
    with dev:
        source = open_source(args.data, info.input_shape, info.classes, limits=limits)
        count = args.count if args.count is not None or source.live else DATASET_COUNT
        source = limited(source, args.offset, count)
        if source.length == 0:
            raise SnnError(f"{args.data} holds no images (after --offset {args.offset})")
        dev.client.keep_last(source.length or LIVE_RECORDS_KEPT)
        state["on_result"], state["bar"] = _progress(args, source.length, info.classes, text)
        if not args.quiet:
            what = f"{source.length} images of {source.name}" if source.length is not None else source.name
            print(f"device {args.device_id}: {dev.encoder.path.name} ({info.quantization}, codec "
                  f"{info.fingerprint.hex()}, {info.payload_bytes} B payload) -> {args.to}, MTU {dev.client.mtu}"
                  f"{', link ' + dev.link.name if dev.link else ''}, {what}", file=text, flush=True)
        stop = threading.Event()
        interrupted = False
        previous = _stop_on_sigterm(stop)
        try:
            if source.name.startswith("watch:"):
                print(f"watching {source.folder}", file=sys.stderr, flush=True)
            dev.client.run(source, stop=stop)
        except KeyboardInterrupt:
            interrupted = True  # still print and save what was measured
            dev.client.t_end = time.monotonic()
            if source.length is not None:
                dev.client.count = source.length
        finally:
            _restore_sigterm(previous)
            source.close()
            if state["bar"] is not None:
                state["bar"].close()
    client = dev.client
    summary = client.summary()
    summary.update({"encoder": str(args.encoder), "to": args.to, "data": source.name, "interrupted": interrupted,
                    "stopped": stop.is_set()})
    if args.json:
        _write_json(args.json, summary, client, info.classes)
    _print_summary(summary, text)
    for note in client.notes:
        print(f"snn device: note: {note}", file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt
    if client.source_error is not None:
        raise SnnError(f"{source.name}: {client.source_error} (the inferences before it are in the summary)")
    if client.fatal:
        raise SnnError(f"the edge at {args.to} refused this device: {client.fatal}")
    if summary["answered"] == 0 and summary["sent"] > 0:
        print(f"snn device: no reply from the edge at {args.to} ({summary['sent']} inference(s) sent, "
              f"each {1 + args.retries} time(s) with a {args.timeout:g} s timeout): is the edge running and "
              f"reachable?", file=sys.stderr)
        return 1
    return 0


def _stop_on_sigterm(stop: threading.Event):
    """SIGTERM (a service manager stopping us) ends the run cleanly: no new inference, the ones in
    flight finish, the summary is printed. Returns the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: stop.set())


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _progress(args, n: int | None, classes, text):
    """(on_result callback, tqdm bar or None): a JSON line per inference with --jsonl; one text
    line per inference for small or live runs, else a bar with the running accuracy on a
    terminal, else nothing."""
    show_each = not args.quiet and not args.jsonl and (args.verbose or n is None or n <= PRINT_EACH_UP_TO)
    bar = None
    if not args.quiet and not args.jsonl and not show_each and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=n, unit="inf", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    state = {"done": 0, "correct": 0, "scored": 0}

    def on_result(rec, client):
        state["done"] += 1
        if rec.correct is not None:
            state["scored"] += 1
            state["correct"] += int(rec.correct)
        acc = state["correct"] / state["scored"] if state["scored"] else None
        if args.jsonl:
            sys.stdout.write(json.dumps(_public(rec, classes)) + "\n")
            sys.stdout.flush()
        if show_each:
            print(_line(rec, classes, acc), file=text, flush=True)
        if bar is not None:
            bar.update(1)
            if acc is not None:
                bar.set_postfix(acc=f"{acc:.2%}", refresh=False)

    return on_result, bar


def _public(rec, classes) -> dict:
    """One inference as --json's `inferences` entries and --jsonl's lines carry it."""
    name = classes[rec.label] if rec.label is not None and 0 <= rec.label < len(classes) else None
    return dict(rec.public(), class_name=name)


def _write_json(path, summary: dict, client, classes) -> None:
    """The summary, the class names and every kept inference (with its class name) as JSON."""
    record = dict(summary, classes=list(classes), inferences=[_public(r, classes) for r in client.records])
    Path(path).write_text(json.dumps(record, indent=1))


def _line(rec, classes: list[str], acc) -> str:
    name = lambda i: classes[i] if i is not None and 0 <= i < len(classes) else "?"  # noqa: E731
    air = f"air {rec.airtime_ms:8.2f} ms" if rec.airtime_ms is not None else ""
    head = (f"#{rec.index:<5d} ctr {rec.counter:<10d} enc {rec.encode_ms:6.3f} ms  {rec.bytes_on_air:4d} B/"
            f"{rec.frames} fr  {air}") + (f"  {rec.name}" if rec.name else "")
    if rec.status != "ok":
        return f"{head}  {rec.status.upper()}: {rec.error}"
    mark = "" if rec.correct is None else (" ok " if rec.correct else " NO ")
    truth = f" truth {name(rec.truth)}" if rec.truth is not None else ""
    running = f"  acc {acc:.2%}" if acc is not None else ""
    return (f"{head}  rtt {rec.rtt_ms:7.2f} ms  -> {rec.label} {name(rec.label):12s} ({rec.confidence:.2f})"
            f"{truth}{mark}{running}")


def _print_summary(s: dict, text=None) -> None:
    text = text or sys.stdout
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"\nanswered {s['answered']}/{s['count']} (lost {s['lost']}, errors {s['errors']}, "
          f"resends {s['resends']})  accuracy {acc}", file=text)
    print(f"encode p50 {fmt(s['encode_p50_ms'])} ms   rtt p50 {fmt(s['rtt_p50_ms'])} ms  p99 "
          f"{fmt(s['rtt_p99_ms'])} ms   {s['bytes_on_air_per_inference']} B in {s['frames_per_inference']} "
          f"frame(s) per inference" + (f", {s['airtime_ms_per_inference']:.2f} ms on air ({s['link']})"
                                        if s['airtime_ms_per_inference'] is not None else ""), file=text)
    print(f"peak RSS {s['peak_rss_bytes'] / 2**20:.1f} MiB   {s['inferences_per_s']} inferences/s", file=text)
