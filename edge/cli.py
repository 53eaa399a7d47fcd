"""`snn edge serve`: run the edge server (HTTP + UDP + serial on one loop)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from snn.errors import SnnError


def _defaults():
    """The serve flags' defaults, read from the dataclasses that own them (one place per default)."""
    from edge.core import EdgeConfig
    from edge.http_guard import HttpLimits
    from edge.server import ServeOptions

    options, limits = ServeOptions.__dataclass_fields__, HttpLimits()
    return EdgeConfig.default, {
        "http": "%s:%d" % options["http"].default, "udp": "%s:%d" % options["udp"].default,
        "threads": options["threads"].default, "log_level": options["log_level"].default,
        "idle": limits.idle_timeout_s, "request": limits.request_timeout_s}


def _security_arguments(p: argparse.ArgumentParser, cfg) -> None:
    """serve's keys, replay state and budgets of unauthenticated work (docs/PROTOCOL.md §4, §6)."""
    p.add_argument("--keys", metavar="FILE",
                   help="provisioned device keys (snn keys new ...): only frames authenticated by one "
                        "of them are answered (docs/PROTOCOL.md §4); each key's replay window is kept "
                        "in FILE.edge-state (required; snn keys new makes it) across restarts (default: none; "
                        "then --insecure is required)")
    p.add_argument("--reset-replay-state", action="store_true",
                   help="start although KEYS.edge-state (the replay state, required with --keys) is missing or "
                        "damaged: every device's history becomes unknown, so frames captured before can be "
                        "answered once more (logged loudly; default: refuse to start)")
    p.add_argument("--insecure", action="store_true",
                   help="without --keys: accept every device with the public all-zero key (tests and "
                        "demos on trusted links only)")
    p.add_argument("--source-fail-rate", type=float, default=cfg("source_fail_rate"), metavar="N",
                   help="frames/s failing authentication a source address may send before it is "
                        "ignored for a while (0: no limit; default %(default)s)")
    p.add_argument("--fail-cpu", type=float, default=cfg("fail_cpu"), metavar="S",
                   help="CPU seconds per second that every frame failing authentication may cost together, "
                        "from any number of sources; past it, frames not from a device's own recent "
                        "(address, id) pair are dropped unread, counted 'unverified' (0: no limit; default "
                        "%(default)s)")
    p.add_argument("--claim-fail-rate", type=float, default=cfg("claim_fail_rate"), metavar="N",
                   help="failed MIC checks per second per claimed device id (online guessing); past it, frames "
                        "claiming that id are dropped unverified unless they come from the device's own "
                        "(address, id) pair (0: no limit; default %(default)s)")
    p.add_argument("--pair-fail-rate", type=float, default=cfg("pair_fail_rate"), metavar="N",
                   help="failures per second tolerated from a device's own (address, id) pair (someone "
                        "spoofing it) before its frames are treated like any other (default %(default)s)")
    p.add_argument("--device-rate", type=float, default=cfg("device_rate"), metavar="N",
                   help="authenticated frames/s per device (0: no limit; default %(default)s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="edge_command", metavar="SUBCOMMAND", required=True)
    cfg, opt = _defaults()
    p = sub.add_parser("serve", help="serve bundles over HTTP, UDP and serial",
                       description="Serve one or more codec bundles. Frames are routed by their "
                                   "codec fingerprint. Stop with SIGTERM or Ctrl-C (drains the queue).")
    p.add_argument("--bundle", action="append", metavar="B",
                   help="bundle file to serve (repeat for several; default: the shipped default bundle)")
    p.add_argument("--http", default=opt["http"], metavar="HOST:PORT",
                   help="HTTP address (default %(default)s; port 0 picks a free one)")
    p.add_argument("--udp", default=opt["udp"], metavar="HOST:PORT",
                   help="UDP address (default %(default)s; 'none' disables UDP)")
    p.add_argument("--serial", action="append", metavar="URL",
                   help="serial link to listen on, e.g. serial:///dev/ttyUSB0?baud=115200 or pty:// "
                        "(a new pty pair; its path is printed); repeatable (default: none)")
    p.add_argument("--max-batch", type=int, default=cfg("max_batch"), help="largest model batch (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=cfg("max_wait_ms"),
                   help="longest a frame waits for its batch to fill (default %(default)s ms)")
    p.add_argument("--queue", type=int, default=cfg("max_queue"),
                   help="inferences that may wait for the model; beyond it frames get a BUSY reply "
                        "(default %(default)s)")
    p.add_argument("--deadline-ms", type=float, default=cfg("deadline_ms"),
                   help="answer a frame within this many ms of its arrival or refuse it BUSY at once "
                        "(admission by expected queue delay; default %(default)s)")
    p.add_argument("--busy-rate", type=float, default=cfg("busy_rate"), metavar="N",
                   help="under overload, answer at most N refusals/s with BUSY (each costs a full "
                        "authentication); the rest are dropped unread, counted as 'shed' (0: answer "
                        "every refusal; default %(default)s)")
    p.add_argument("--udp-queue", type=int, default=None, metavar="N",
                   help="datagrams the kernel may hold for the UDP socket (its receive buffer); beyond "
                        "it the kernel drops them (counted), so overload never builds a queue that "
                        "outlives the deadline (default: what the model serves in half of "
                        "--deadline-ms, from its measured batch cost; the ready JSON says it)")
    p.add_argument("--reassembly-timeout", type=float, default=cfg("reassembly_timeout_s"), metavar="S",
                   help="decode a fragmented inference with erasures after S seconds (default %(default)s)")
    p.add_argument("--max-devices", type=int, default=cfg("max_devices"),
                   help="devices tracked in the per-device statistics (LRU; default %(default)s)")
    p.add_argument("--engine", choices=["onnx", "torch"], default="onnx",
                   help="what runs the decoder + task head: onnx (the bundle's verified edge.onnx on "
                        "onnxruntime, no torch needed; default) or torch (the bundle's weights)")
    p.add_argument("--threads", type=int, default=opt["threads"],
                   help="threads of the model engine per batch (default %(default)s)")
    p.add_argument("--torchscript", action="store_true",
                   help="with --engine torch: run the edge half TorchScript-traced (faster model, but "
                        "occasional re-optimisation stalls; default: eager)")
    _security_arguments(p, cfg)
    p.add_argument("--http-max-connections", type=int, metavar="N",
                   help="most HTTP connections held at once; at the cap a new connection closes the "
                        "one idle longest (default 1024, or half of `ulimit -n` where that is lower; "
                        "at most ulimit -n minus 256)")
    p.add_argument("--http-idle-timeout", type=float, default=opt["idle"], metavar="S",
                   help="close an HTTP connection that starts no request within S seconds of "
                        "connecting or of its last response (default %(default)s)")
    p.add_argument("--http-request-timeout", type=float, default=opt["request"], metavar="S",
                   help="close an HTTP connection whose request (line, headers, body) is not all in "
                        "S seconds after its first byte (default %(default)s)")
    p.add_argument("--ray", metavar="local|ADDRESS",
                   help="run the decoder + task head on Ray Serve replicas: 'local' starts a Ray on this "
                        "host, ADDRESS joins a cluster (e.g. 10.0.0.1:6379); needs the .[cluster] extra "
                        "(default: in this process)")
    p.add_argument("--replicas", type=int, default=2,
                   help="Ray Serve replicas of the model half (with --ray; default %(default)s)")
    p.add_argument("--replica-cpus", type=float, default=1.0,
                   help="CPUs Ray reserves per replica (default %(default)s)")
    p.add_argument("--ray-app", default="snn-edge",
                   help="Ray Serve application name; fronts with the same name and bundles share its "
                        "replicas (default %(default)s)")
    p.add_argument("--reuse-port", action="store_true",
                   help="SO_REUSEPORT on the UDP and HTTP ports: several fronts on one host share them "
                        "(the kernel keeps each device on one front)")
    p.add_argument("--operator-token", metavar="FILE",
                   help="the operator credential for /v1/stats, /v1/codecs, /metrics, the dashboard and JSON "
                        "answers: a token in FILE (mode 0600; made there when FILE does not exist); clients "
                        "send 'Authorization: Bearer TOKEN' (default: KEYS.operator-token beside --keys, or a "
                        "fresh private temporary file with --insecure; --ready-json names it as "
                        "operator_token_file)")
    p.add_argument("--no-operator-token", action="store_true",
                   help="open the operator endpoints to anyone who reaches the HTTP port (a trusted LAN only; "
                        "logged at start)")
    p.add_argument("--ready-json", metavar="PATH",
                   help="write the bound addresses as JSON to PATH once serving (default: not written)")
    p.add_argument("--log-level", default=opt["log_level"], choices=["debug", "info", "warning", "error"])

    b = sub.add_parser("balance", help="a UDP balancer that keeps each device on one front",
                       description="Forward device datagrams to several edge fronts, each device id "
                                   "always to the same front (rendezvous hashing), and relay replies.")
    b.add_argument("--listen", required=True, metavar="HOST:PORT", help="UDP address the devices send to")
    b.add_argument("--to", action="append", required=True, metavar="HOST:PORT",
                   help="a front's UDP address (repeat for each front)")
    b.add_argument("--max-clients", type=int, default=4096,
                   help="client addresses with an open upstream socket (LRU; default %(default)s)")
    b.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                   help="close a client's upstream socket after S idle seconds (default %(default)s)")
    b.add_argument("--ready-json", metavar="PATH", help="write the bound address as JSON to PATH once serving "
                                                        "(default: not written)")


def run(args: argparse.Namespace) -> int:
    if args.edge_command == "balance":
        return balance(args)
    if args.edge_command != "serve":
        raise SnnError(f"unknown edge subcommand {args.edge_command}")
    from edge.codecs import load_codecs
    from edge.core import EdgeConfig
    from edge.http_guard import HttpLimits, check_max_connections, default_max_connections
    from edge.server import ServeOptions, parse_hostport, serve

    for name, value in (("--threads", args.threads), ("--replicas", args.replicas)):
        if value < 1:
            raise SnnError(f"{name} must be at least 1, got {value}")
    if args.torchscript and args.engine != "torch":
        raise SnnError("--torchscript traces the torch engine: add --engine torch")
    if args.ray:
        from edge.ray_serve import require_ray
        require_ray()
        if args.torchscript:
            raise SnnError("--torchscript applies to the in-process model half, not to --ray replicas")
        if args.replica_cpus <= 0:
            raise SnnError(f"--replica-cpus must be positive, got {args.replica_cpus}")
    if not all(0 < t < 86400 for t in (args.http_idle_timeout, args.http_request_timeout)):
        raise SnnError("--http-idle-timeout and --http-request-timeout take seconds, more than 0 "
                       "and less than a day")
    cap = (default_max_connections() if args.http_max_connections is None
           else check_max_connections(args.http_max_connections))
    limits = HttpLimits(cap, args.http_idle_timeout, args.http_request_timeout)
    http = parse_hostport(args.http, "--http")
    udp = None if str(args.udp).lower() in ("none", "off", "") else parse_hostport(args.udp, "--udp")
    from codec.wire.edge_state import edge_state_path
    keys = None
    if args.keys:
        from codec.wire.keys import load_keys
        keys = load_keys(args.keys)
    logging.basicConfig(level=args.log_level.upper(), format="snn edge: %(levelname)s %(message)s")
    try:
        config = EdgeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.queue,
                            reassembly_timeout_s=args.reassembly_timeout, max_devices=args.max_devices,
                            keys=keys, insecure=args.insecure, source_fail_rate=args.source_fail_rate,
                            device_rate=args.device_rate, fail_cpu=args.fail_cpu,
                            claim_fail_rate=args.claim_fail_rate, pair_fail_rate=args.pair_fail_rate,
                            state_path=str(edge_state_path(args.keys)) if args.keys else None,
                            reset_replay_state=args.reset_replay_state, keys_path=args.keys,
                            model_workers=args.replicas if args.ray else 1,
                            deadline_ms=args.deadline_ms, busy_rate=args.busy_rate)
    except ValueError as exc:
        raise SnnError(str(exc)) from None
    if args.udp_queue is not None and args.udp_queue < 16:
        raise SnnError(f"--udp-queue must be at least 16, got {args.udp_queue}")
    options = ServeOptions(http=http, udp=udp, serial=args.serial, threads=args.threads,
                           operator=_operator(args),
                           udp_queue=args.udp_queue, log_level=args.log_level, http_limits=limits,
                           reuse_port=args.reuse_port)

    engine: dict = {"replicas": 1}   # the engine's name comes from the codecs (edge.server)
    backends: list = []

    def load():
        codecs = load_codecs(args.bundle, trace=args.torchscript, engine=args.engine, threads=args.threads)
        if args.ray:
            from edge.ray_serve import attach
            backends.append(attach(codecs, args.ray, args.replicas, args.ray_app, args.replica_cpus,
                                   args.threads))
            engine.update(backends[0].describe())
        return codecs

    def ready(addresses: dict) -> None:
        addresses.update(engine)
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

    try:
        return serve(load, config, options, ready)
    finally:
        for backend in backends:
            backend.close()


def _operator(args: argparse.Namespace):
    """The operator credential the flags ask for (None: a private temporary token file)."""
    from edge.operator_auth import load_or_create, open_access

    if args.no_operator_token:
        if args.operator_token:
            raise SnnError("--operator-token and --no-operator-token exclude each other")
        return open_access()
    path = args.operator_token or (f"{args.keys}.operator-token" if args.keys else None)
    return load_or_create(path) if path else None


def balance(args: argparse.Namespace) -> int:
    """`snn edge balance`: run until SIGTERM/SIGINT."""
    import asyncio
    import signal

    from edge.balancer import serve_balancer
    from edge.server import parse_hostport

    listen = parse_hostport(args.listen, "--listen")
    backends = [parse_hostport(t, "--to") for t in args.to]
    if args.max_clients < 1 or args.idle_timeout <= 0:
        raise SnnError("--max-clients must be at least 1 and --idle-timeout positive")

    def ready(address: str) -> None:
        print(f"snn edge: balancing {address} over {' '.join(args.to)}", flush=True)
        if args.ready_json:
            with open(args.ready_json, "w", encoding="utf-8") as fh:
                json.dump({"udp": address, "backends": args.to}, fh)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        b = await serve_balancer(listen, backends, args.max_clients, args.idle_timeout, ready, stop)
        print(f"snn edge: balancer stopped: {b.forwarded} datagrams forwarded, {b.replies} replies, "
              f"{b.evicted} clients evicted", flush=True)

    asyncio.run(main())
    return 0
