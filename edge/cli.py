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
    p.add_argument("--no-bad-frame-replies", action="store_true",
                   help="drop frames whose header fails silently (counted) instead of answering an "
                        "ERROR frame; saves downlink airtime on radio links")
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
    logging.basicConfig(level=args.log_level.upper(), format="snn edge: %(levelname)s %(message)s")
    config = EdgeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.queue,
                        reassembly_timeout_s=args.reassembly_timeout, max_devices=args.max_devices,
                        reply_bad_frames=not args.no_bad_frame_replies, deadline_ms=args.deadline_ms)
    if args.udp_queue < 16:
        raise SnnError(f"--udp-queue must be at least 16, got {args.udp_queue}")
    options = ServeOptions(http=http, udp=udp, serial=args.serial, threads=args.threads,
                           udp_queue=args.udp_queue,
                           log_level=args.log_level)

    def ready(addresses: dict) -> None:
        parts = [addresses["http"]] + ([addresses["udp"]] if addresses["udp"] else [])
        parts += [f"serial:{p}" for p in addresses["serial"]]
        print(f"snn edge: serving {'; '.join(addresses['codecs'])} on {' '.join(parts)}", flush=True)
        if args.ready_json:
            with open(args.ready_json, "w", encoding="utf-8") as fh:
                json.dump(addresses, fh)
        sys.stdout.flush()

    return serve(lambda: load_codecs(args.bundle, trace=args.torchscript, engine=args.engine,
                                     threads=args.threads), config, options, ready)
