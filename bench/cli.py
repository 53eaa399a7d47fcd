"""`snn bench ...`: benchmarks that print their figures and, with --json, save them."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from snn.errors import SnnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    wire = sub.add_parser("wire", help="packing and frame parsing throughput")
    wire.add_argument("--frames", type=int, default=10_000)
    wire.add_argument("--symbols", type=int, default=392)
    wire.add_argument("--levels", type=int, default=8)
    wire.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not "
                                                                "written)")
    b = sub.add_parser("channel", help="bit-flipping throughput of each error model",
                       description="Time ErrorModel.corrupt on random buffers (MB/s).")
    b.add_argument("--size", type=int, default=1 << 20, help="buffer bytes (default 1 MiB)")
    b.add_argument("--ber", type=float, default=1e-3, help="BER (default 1e-3)")
    b.add_argument("--burst", type=float, default=8.0, help="GE mean burst length (default 8)")
    b.add_argument("--models", default=",".join(("iid", "ge", "awgn", "lora", "lora-phy")),
                   help="comma-separated models (default iid,ge,awgn,lora,lora-phy)")
    b.add_argument("--repeats", type=int, default=30)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not written)")

    cp = sub.add_parser("copies", help="header copies and fragments on real stacks over lossy channels",
                        description="Run a real edge, channel proxy and `snn device run` per channel and "
                                    "header-copies setting; every transmission counted.")
    from bench.copies import CHANNELS
    cp.add_argument("--channel", action="append", default=None, choices=sorted(CHANNELS),
                    help="channel (repeatable; default untuned: GE burst 20 at 3e-2, 5%% bursty loss, "
                         "downlink 1e-2 and 2%%)")
    cp.add_argument("--mtu", default="51,222", help="MTUs, comma-separated (default 51,222)")
    cp.add_argument("--copies", default="auto,1", help="settings, comma-separated (default auto,1)")
    cp.add_argument("--count", type=int, default=300, help="images per run (default 300)")
    cp.add_argument("--no-truth", action="store_true", help="send without the test-mode truth bytes")
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument("--json", type=Path, metavar="PATH",
                    help="write the figures as JSON to PATH (default: not written)")
    gw = sub.add_parser("gateway", help="a device through emulated LoRa gateways into a --gateway edge",
                        description="Run a real `snn edge serve --gateway`, `snn channel gateways` (a chirp-level "
                                    "LoRa PHY per gateway, failed CRCs forwarded) and `snn device run`; count what "
                                    "each gateway forwarded and what the edge answered through which.")
    gw.add_argument("--snr-db", default="-7.5,-5", metavar="DB[,DB...]",
                    help="each gateway's SNR, one value per gateway (default -7.5,-5: two gateways)")
    gw.add_argument("--sf", type=int, default=7, help="spreading factor (default 7)")
    gw.add_argument("--count", type=int, default=300, help="images (default 300)")
    gw.add_argument("--no-crc", action="store_true", help="the device sends no payload CRC (every stat 0)")
    gw.add_argument("--drop", type=float, default=0.0, metavar="P", help="each gateway misses a packet with P")
    gw.add_argument("--seed", type=int, default=0)
    gw.add_argument("--json", type=Path, metavar="PATH",
                    help="write the figures as JSON to PATH (default: not written)")
    ls = sub.add_parser("lsnr", help="does the gateway's SNR (lsnr) help the edge's BER estimate and accuracy?",
                        description="Frames of real images through the chirp-level LoRa PHY along SNR traces; the "
                                    "real edge half conditioned on the header-only estimate, the estimate with the "
                                    "lsnr as prior, the lsnr alone and the true BER.")
    ls.add_argument("--sf", type=int, default=7, help="spreading factor (default 7)")
    ls.add_argument("--count", type=int, default=2000, help="images (default 2000)")
    ls.add_argument("--seeds", type=int, default=2, help="channel seeds (default 2)")
    ls.add_argument("--lsnr-error-db", type=float, default=1.0, metavar="DB",
                    help="standard deviation of the reported lsnr around the true SNR (default 1)")
    ls.add_argument("--bundle", default=None, metavar="B", help="bundle (default: the shipped default)")
    ls.add_argument("--json", type=Path, metavar="PATH",
                    help="write the figures as JSON to PATH (default: not written)")
    flood = sub.add_parser("flood", help="a keyed device while an attacker floods the edge")
    flood.add_argument("--rate", type=float, default=100.0, help="device frames/s (default %(default)s)")
    flood.add_argument("--garbage-rate", type=float, default=20000.0,
                       help="attacker datagrams/s, all sources together (default %(default)s)")
    flood.add_argument("--sources", type=int, default=1,
                       help="distinct source ports the attacker sends from (ordinary sockets; default %(default)s)")
    flood.add_argument("--attack", choices=["garbage", "bad-mic"], default="garbage",
                       help="random datagrams, or frames claiming the device's id with a guessed MIC "
                            "(default %(default)s)")
    flood.add_argument("--spoof", action="store_true",
                       help="send the attack with the device's own source address and port (raw packets; "
                            "root; loopback)")
    flood.add_argument("--cold", action="store_true",
                       help="start the attack before the device's first frame (an edge just restarted, or a "
                            "device new to it or at a new address: no trusted (address, id) pair yet); the "
                            "figure is how long its first answer takes (default: the device is answered once, "
                            "then the attack starts)")
    flood.add_argument("--duration", type=float, default=10.0, help="seconds (default %(default)s)")
    flood.add_argument("--bundle", action="append", metavar="B", help="bundle to serve, repeatable (default: the "
                                                                      "shipped one)")
    flood.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not "
                                                                 "written)")
    edge = sub.add_parser("edge", help="edge server load test: UDP/HTTP throughput, latency, soak")
    from bench.edge_load import add_bench_arguments
    add_bench_arguments(edge)
    abuse = sub.add_parser("http-abuse", help="a flood of idle HTTP connections against a real edge",
                           description="Open --connections idle HTTP connections from --clients processes "
                                       "against a real `snn edge serve`, and measure /healthz (fresh "
                                       "connection each), a device over UDP and the edge's log.")
    from bench.http_abuse import add_arguments as add_abuse_arguments
    add_abuse_arguments(abuse)
    fleet = sub.add_parser("fleet", help="thousands of simulated devices at mixed rates and BERs "
                                         "against one edge: goodput and p99 against offered load")
    from bench.fleet import add_fleet_arguments
    add_fleet_arguments(fleet)
    energy = sub.add_parser("energy", help="energy per inference of a LoRa device: SemanticNN against the "
                                           "bit-level baselines, from the bytes each sends",
                            description="Run the accuracy benchmark at i.i.d. BER 1e-2 on each LoRa link and turn "
                                        "every row's bytes into energy on the board (bench/energy.py).")
    energy.add_argument("--board", default="stm32f411", help="board profile (default %(default)s)")
    energy.add_argument("--links", default=",".join(("lora-sf7", "lora-sf10", "lora-sf12")),
                        help="comma-separated LoRa links (default %(default)s)")
    energy.add_argument("--ber", type=float, default=1e-2, help="i.i.d. BER (default %(default)s)")
    energy.add_argument("--count", type=int, help="test images (default 300)")
    energy.add_argument("--full", action="store_true", help="every JPEG quality and RS rate of snn bench accuracy")
    energy.add_argument("--json", type=Path, metavar="PATH", help="write the figures as JSON to PATH (default: not "
                                                                  "written)")
    from bench.run import add_end_to_end_arguments
    add_end_to_end_arguments(sub)


def write_json(path: Path | None, result: dict) -> None:
    """Save a benchmark's figures where --json asked for them."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def run_channel_bench(args) -> int:
    from bench.channel import BENCH_MODELS, format_table, run_bench

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in BENCH_MODELS]
    if bad:
        raise SnnError(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(BENCH_MODELS)}")
    if args.size < 1:
        raise SnnError("--size must be at least 1 byte")
    if not 0 < args.ber <= 0.5:
        raise SnnError(f"--ber must lie in (0, 0.5], got {args.ber:g}")
    rows = run_bench(args.size, args.ber, models=models, repeats=max(1, args.repeats),
                     burst=args.burst, seed=args.seed)
    print(format_table(rows))
    write_json(args.json, {"buffer_bytes": args.size, "ber": args.ber, "rows": rows})
    return 0


def run(args: argparse.Namespace) -> int:
    if args.bench == "wire":
        from bench.wire import format_wire, run_wire_bench
        result = run_wire_bench(args.frames, args.symbols, args.levels)
        print(format_wire(result))
        write_json(args.json, result)
    elif args.bench == "channel":
        return run_channel_bench(args)
    elif args.bench == "copies":
        from bench.copies import run_copies
        try:
            mtus = [int(v) for v in args.mtu.split(",") if v.strip()]
        except ValueError:
            raise SnnError(f"--mtu takes comma-separated integers, got {args.mtu!r}") from None
        copies = [c.strip() for c in args.copies.split(",") if c.strip()]
        if not mtus or not copies or any(c not in ("auto", "1", "3", "5") for c in copies) or args.count < 1:
            raise SnnError("--mtu and --copies (auto, 1, 3, 5) need values, --count must be >= 1")
        result = run_copies(args.channel or ["untuned"], mtus, copies, args.count, truth=not args.no_truth,
                            seed=args.seed, log=lambda line: print(line, flush=True))
        write_json(args.json, result)
        return 0
    elif args.bench == "gateway":
        from bench.gateway import run_gateway
        if args.count < 1 or not 0 <= args.drop < 1:
            raise SnnError("--count must be >= 1 and --drop in [0, 1)")
        result = run_gateway(args.snr_db, args.sf, args.count, crc=not args.no_crc, drop=args.drop, seed=args.seed,
                             log=lambda line: print(line, flush=True))
        write_json(args.json, result)
        return 0
    elif args.bench == "lsnr":
        from bench.lsnr import run_lsnr
        if args.count < 1 or args.seeds < 1 or args.lsnr_error_db < 0:
            raise SnnError("--count and --seeds must be >= 1, --lsnr-error-db >= 0")
        write_json(args.json, run_lsnr(args.sf, count=args.count, lsnr_error_db=args.lsnr_error_db, seeds=args.seeds,
                                       bundle_path=args.bundle, log=lambda line: print(line, flush=True)))
        return 0
    elif args.bench == "flood":
        from bench.flood import format_flood, run_flood
        if args.rate <= 0 or args.garbage_rate < 0 or args.duration <= 0:
            raise SnnError("--rate and --duration must be positive, --garbage-rate >= 0")
        result = run_flood(args.rate, args.garbage_rate, args.duration, args.bundle, args.sources, args.attack,
                           args.spoof, args.cold)
        print(format_flood(result))
        write_json(args.json, result)
        return 0 if result["garbage_replies"] == 0 else 1
    elif args.bench == "edge":
        from bench.edge_load import run_bench
        return run_bench(args, write_json)
    elif args.bench == "http-abuse":
        from bench.http_abuse import run as run_http_abuse
        return run_http_abuse(args, write_json)
    elif args.bench == "fleet":
        from bench.fleet import run_fleet
        return run_fleet(args, write_json)
    elif args.bench == "energy":
        from bench.energy import format_energy, run_energy
        if not 0 <= args.ber < 0.5 or (args.count is not None and args.count < 1):
            raise SnnError("--ber must lie in [0, 0.5) and --count be positive")
        links = [s.strip() for s in args.links.split(",") if s.strip()]
        if not links or not all(s.startswith("lora") for s in links):
            raise SnnError("--links takes LoRa links, e.g. lora-sf7,lora-sf12")
        result = run_energy(args.board, links, args.ber, count=args.count, quick=not args.full)
        print(format_energy(result))
        write_json(args.json, result)
    elif args.bench in ("accuracy", "latency", "all"):
        from bench.run import run_end_to_end
        return run_end_to_end(args, write_json)
    return 0
