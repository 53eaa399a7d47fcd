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
    p.add_argument("--reassembly-timeout", type=float, default=0.5, metavar="S",
                   help="decode a fragmented inference with erasures after S seconds (default %(default)s)")
    p.add_argument("--max-devices", type=int, default=1024,
                   help="devices tracked in the per-device statistics (LRU; default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the model (default %(default)s)")
    p.add_argument("--torchscript", action="store_true",
                   help="run the edge half TorchScript-traced (faster model, but occasional "
                        "re-optimisation stalls; default: eager)")
    p.add_argument("--keys", metavar="FILE",
                   help="the provisioned devices' keys (snn keys new -o FILE); frames that do not "
                        "authenticate are counted and never answered. Each key's highest counter is "
                        "kept in FILE.edge-state across restarts")
    p.add_argument("--insecure", action="store_true",
                   help="serve without --keys: any device id under the public all-zero key (no "
                        "secrecy, no authentication, no replay window; loudly logged)")
    p.add_argument("--device-rate", type=float, default=1000.0, metavar="R",
                   help="inferences per second one authenticated device may ask (burst 2 s worth); "
                        "beyond it an authenticated BUSY (default %(default)s)")
    p.add_argument("--auth-failures-per-s", type=float, default=50.0, metavar="R",
                   help="frames failing authentication allowed per source address and second "
                        "(burst 4x); beyond it a source is refused before any decoding "
                        "(default %(default)s)")
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
    if args.max_wait_ms < 0 or args.reassembly_timeout <= 0:
        raise SnnError("--max-wait-ms must be >= 0 and --reassembly-timeout > 0")
    http = parse_hostport(args.http, "--http")
    udp = None if str(args.udp).lower() in ("none", "off", "") else parse_hostport(args.udp, "--udp")
    if args.device_rate <= 0 or args.auth_failures_per_s <= 0:
        raise SnnError("--device-rate and --auth-failures-per-s must be > 0")
    if args.keys and args.insecure:
        raise SnnError("--keys and --insecure exclude each other")
    if not args.keys and not args.insecure:
        raise SnnError("the edge needs --keys FILE (make one: snn keys new --device ID -o FILE); "
                       "--insecure serves without authentication")
    from codec.wire.keys import load_keys

    keys = load_keys(args.keys) if args.keys else None
    logging.basicConfig(level=args.log_level.upper(), format="snn edge: %(levelname)s %(message)s")
    config = EdgeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.queue,
                        reassembly_timeout_s=args.reassembly_timeout, max_devices=args.max_devices,
                        keys=keys, insecure=args.insecure,
                        state_path=f"{args.keys}.edge-state" if args.keys else None,
                        auth_failures_per_s=args.auth_failures_per_s, device_rate=args.device_rate,
                        auth_failure_burst=4 * args.auth_failures_per_s)
    options = ServeOptions(http=http, udp=udp, serial=args.serial, threads=args.threads,
                           log_level=args.log_level)

    def ready(addresses: dict) -> None:
        parts = [addresses["http"]] + ([addresses["udp"]] if addresses["udp"] else [])
        parts += [f"serial:{p}" for p in addresses["serial"]]
        print(f"snn edge: serving {'; '.join(addresses['codecs'])} on {' '.join(parts)}", flush=True)
        if args.ready_json:
            with open(args.ready_json, "w", encoding="utf-8") as fh:
                json.dump(addresses, fh)
        sys.stdout.flush()

    return serve(lambda: load_codecs(args.bundle, trace=args.torchscript), config, options, ready)
