"""`snn edge serve`: run the edge server (HTTP + UDP + serial on one loop)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from snn.errors import SnnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="edge_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("serve", help="serve bundles over HTTP, UDP and serial",
                       description="Serve one or more codec bundles. Frames are routed by their "
                                   "codec fingerprint. Stop with SIGTERM or Ctrl-C (drains the queue).")
    p.add_argument("--bundle", action="append", metavar="B",
                   help="bundle file to serve (repeat for several; default: the shipped default bundle)")
    p.add_argument("--http", default="127.0.0.1:8000", metavar="HOST:PORT",
                   help="HTTP address (default %(default)s; port 0 picks a free one)")
    p.add_argument("--udp", default="127.0.0.1:9000", metavar="HOST:PORT",
                   help="UDP address (default %(default)s; 'none' disables UDP)")
    p.add_argument("--serial", action="append", metavar="URL",
                   help="serial link to listen on, e.g. serial:///dev/ttyUSB0?baud=115200 or pty:// "
                        "(a new pty pair; its path is printed); repeatable")
    p.add_argument("--max-batch", type=int, default=64, help="largest model batch (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="longest a frame waits for its batch to fill (default %(default)s ms)")
    p.add_argument("--queue", type=int, default=2048,
                   help="inferences that may wait for the model; beyond it frames get a BUSY reply "
                        "(default %(default)s)")
    p.add_argument("--deadline-ms", type=float, default=50.0,
                   help="answer a frame within this many ms of its arrival or refuse it BUSY at once "
                        "(admission by expected queue delay; default %(default)s)")
    p.add_argument("--udp-queue", type=int, default=1024, metavar="N",
                   help="datagrams the kernel may hold for the UDP socket (receive buffer; default "
                        "%(default)s): beyond it the kernel drops them (counted), so overload never "
                        "builds a queue that outlives the deadline")
    p.add_argument("--reassembly-timeout", type=float, default=0.5, metavar="S",
                   help="decode a fragmented inference with erasures after S seconds (default %(default)s)")
    p.add_argument("--max-devices", type=int, default=1024,
                   help="devices tracked in the per-device statistics (LRU; default %(default)s)")
    p.add_argument("--engine", choices=["onnx", "torch"], default="onnx",
                   help="what runs the decoder + task head: onnx (the bundle's verified edge.onnx on "
                        "onnxruntime, no torch needed; default) or torch (the bundle's weights)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of the model engine per batch (default %(default)s)")
    p.add_argument("--torchscript", action="store_true",
                   help="with --engine torch: run the edge half TorchScript-traced (faster model, but "
                        "occasional re-optimisation stalls; default: eager)")
    p.add_argument("--keys", metavar="FILE",
                   help="provisioned device keys (snn keys new ...): only frames authenticated by one "
                        "of them are answered (docs/PROTOCOL.md §4); each key's replay window is kept "
                        "in FILE.edge-state across restarts")
    p.add_argument("--insecure", action="store_true",
                   help="without --keys: accept every device with the public all-zero key (tests and "
                        "demos on trusted links only)")
    p.add_argument("--source-fail-rate", type=float, default=200.0, metavar="N",
                   help="frames/s failing authentication a source address may send before it is "
                        "ignored for a while (0: no limit; default %(default)s)")
    p.add_argument("--device-rate", type=float, default=5000.0, metavar="N",
                   help="authenticated frames/s per device (0: no limit; default %(default)s)")
    p.add_argument("--ready-json", metavar="PATH",
                   help="write the bound addresses as JSON to PATH once serving")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    if args.edge_command != "serve":
        raise SnnError(f"unknown edge subcommand {args.edge_command}")
    from edge.codecs import load_codecs
    from edge.core import EdgeConfig
    from edge.server import ServeOptions, parse_hostport, serve

    for name, value in (("--max-batch", args.max_batch), ("--queue", args.queue),
                        ("--max-devices", args.max_devices), ("--threads", args.threads)):
        if value < 1:
            raise SnnError(f"{name} must be at least 1, got {value}")
    if args.torchscript and args.engine != "torch":
        raise SnnError("--torchscript traces the torch engine: add --engine torch")
    if args.max_wait_ms < 0 or args.reassembly_timeout <= 0 or args.deadline_ms <= 0:
        raise SnnError("--max-wait-ms must be >= 0, --reassembly-timeout and --deadline-ms > 0")
    http = parse_hostport(args.http, "--http")
    udp = None if str(args.udp).lower() in ("none", "off", "") else parse_hostport(args.udp, "--udp")
    if args.keys and args.insecure:
        raise SnnError("--keys and --insecure exclude each other")
    if not args.keys and not args.insecure:
        raise SnnError("the edge needs --keys FILE (make one with 'snn keys new --device ID -o FILE'), or "
                       "--insecure to accept every device unauthenticated (trusted links only)")
    keys = None
    if args.keys:
        from codec.wire.keys import load_keys
        keys = load_keys(args.keys)
    logging.basicConfig(level=args.log_level.upper(), format="snn edge: %(levelname)s %(message)s")
    config = EdgeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.queue,
                        reassembly_timeout_s=args.reassembly_timeout, max_devices=args.max_devices,
                        keys=keys, insecure=keys is None, source_fail_rate=args.source_fail_rate,
                        device_rate=args.device_rate, device_burst=2 * args.device_rate,
                        source_fail_burst=2 * args.source_fail_rate,
                        state_path=f"{args.keys}.edge-state" if args.keys else None,
                        deadline_ms=args.deadline_ms)
    if args.udp_queue < 16:
        raise SnnError(f"--udp-queue must be at least 16, got {args.udp_queue}")
    options = ServeOptions(http=http, udp=udp, serial=args.serial, threads=args.threads,
                           udp_queue=args.udp_queue,
                           log_level=args.log_level)

    def ready(addresses: dict) -> None:
        if args.insecure:  # said once serving, loudly, on stderr and in the log
            logging.getLogger("snn.edge").warning(
                "INSECURE (--insecure): no keys; every device is accepted with the public all-zero key, so "
                "anyone who reaches this edge can use it and read its answers (trusted links only)")
        parts = [addresses["http"]] + ([addresses["udp"]] if addresses["udp"] else [])
        parts += [f"serial:{p}" for p in addresses["serial"]]
        print(f"snn edge: serving {'; '.join(addresses['codecs'])} on {' '.join(parts)}", flush=True)
        if args.ready_json:
            with open(args.ready_json, "w", encoding="utf-8") as fh:
                json.dump(addresses, fh)
        sys.stdout.flush()

    return serve(lambda: load_codecs(args.bundle, trace=args.torchscript, engine=args.engine,
                                     threads=args.threads), config, options, ready)
