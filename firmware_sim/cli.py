"""`snn mcu report|export|run|agree`: argument parsing only; the work lives in the firmware_sim modules."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from snn.errors import SnnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="report|export|run|agree|build|qemu|boards", required=True)
    r = sub.add_parser("report", help="flash, peak SRAM, MACs and latency of an int8 encoder on a board")
    r.add_argument("encoder", type=Path, help="int8 QDQ ONNX encoder (snn export -o DIR -> DIR/encoder.int8.onnx)")
    r.add_argument("--board", required=True, help="board name (stm32f411, stm32f746, stm32h743, nrf52840) "
                                                  "or path of a board .json")
    r.add_argument("--link", default="uart-115200", help="link for the time on air (default uart-115200)")
    r.add_argument("--json", type=Path, default=None, help="write the figures here (default: not written)")
    r.add_argument("--no-refuse", action="store_true", help="exit 0 even when the model does not fit")
    r.add_argument("--no-elf", action="store_true", help="skip building the real firmware to measure its ELF")

    e = sub.add_parser("export", help="C header of weights/biases/requantisation + JSON layer plan")
    e.add_argument("encoder", type=Path)
    e.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    e.add_argument("--prefix", default="snn", help="C identifier prefix (default snn)")

    u = sub.add_parser("run", help="emulate the MCU firmware on a serial port")
    u.add_argument("--board", required=True)
    u.add_argument("--port", required=True, help="serial:///dev/pts/N?baud=115200 or a device path")
    u.add_argument("--encoder", type=Path, default=None,
                   help="int8 encoder (default: the shipped bundle's, codec/zoo/fmnist_default.int8.onnx)")
    src = u.add_mutually_exclusive_group()
    src.add_argument("--data", default=None,
                     help="data set spec with an optional :train|:test|:val suffix (no suffix: :test), e.g. "
                          "folder:PATH:test (default fmnist:test)")
    src.add_argument("--images", type=Path, default=None, help=".npy of uint8 images (N,H,W[,C]) (default: none, "
                                                               "--data is used)")
    u.add_argument("--count", type=int, default=None, help="(default: every image)")
    u.add_argument("--device-id", type=int, default=1)
    u.add_argument("--key-file", default=None, metavar="FILE",
                   help="keys file (snn keys new): the device's key; its counter is kept beside it. Without "
                        "it, the insecure all-zero key (an edge run with --insecure) (default: none)")
    u.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for a reply (default 3)")
    u.add_argument("--retries", type=int, default=2)
    u.add_argument("--mtu", type=int, default=255)
    u.add_argument("--no-compute-delay", action="store_true",
                   help="do not wait the board's estimated encoder latency before sending")
    u.add_argument("--no-truth", action="store_true", help="do not send the ground-truth label")
    u.add_argument("--json", type=Path, default=None, help="(default: not written)")

    a = sub.add_parser("agree", help="symbol agreement of the integer path with onnxruntime's int8 session")
    a.add_argument("encoder", type=Path)
    a.add_argument("--data", default="fmnist:test",
                   help="data set spec with an optional :train|:test|:val suffix (no suffix: :test) "
                        "(default fmnist:test)")
    a.add_argument("--count", type=int, default=None, help="(default: every image)")
    a.add_argument("--json", type=Path, default=None, help="(default: not written)")
    a.add_argument("--engine", choices=("sim", "c"), default="sim",
                   help="sim: the Python integer simulator; c: the generated C firmware built for this host")

    from firmware_sim import fw_cli
    fw_cli.add_arguments(sub)

    sub.add_parser("boards", help="list the board profiles")


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str))


def _default_encoder() -> Path:
    from export.shipped import default_int8_encoder
    return default_int8_encoder(log=lambda msg: print(msg, file=sys.stderr, flush=True))


def _images(args):
    import numpy as np

    if args.images is not None:
        arr = np.load(args.images)
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.dtype != np.uint8:
            raise SnnError(f"{args.images}: images must be uint8 (N,H,W[,C])")
        arr = arr[:args.count] if args.count else arr
        return arr, None
    from codec.datasets import load_dataset

    ds = load_dataset(args.data or "fmnist:test").take(args.count)
    return ds.images, ds.labels


def run(args: argparse.Namespace) -> int:
    if args.what == "boards":
        from firmware_sim.boards import board_names, load_board
        for name in board_names():
            b = load_board(name)
            print(f"{b.name:<12} {b.core:<10} {b.clock_hz / 1e6:>5.0f} MHz  SRAM {b.sram_bytes // 1024:>5} KB  "
                  f"flash {b.flash_bytes // 1024:>5} KB")
        return 0
    if args.what == "report":
        from firmware_sim.report import check_fits, format_report, mcu_report
        rep = mcu_report(args.encoder, args.board, link=args.link)
        print(format_report(rep))
        if not args.no_elf:
            from firmware_sim.build import elf_report, format_elf, target_for
            try:
                target_for(rep["board"])
            except SnnError:
                pass  # a user's board profile without a firmware target: the estimate only
            else:
                rep["firmware"] = elf_report(args.encoder, rep["board"])
                print(format_elf(rep["firmware"]))
        _write_json(args.json, rep)
        if not args.no_refuse:
            check_fits(rep)
        return 0
    if args.what == "export":
        from firmware_sim.c_export import export_c
        res = export_c(args.encoder, args.out, prefix=args.prefix)
        print(f"wrote {res['header']} ({res['arrays']} arrays, {res['param_bytes']} B of parameters) and "
              f"{res['plan']} (arena {res['arena_bytes']} B)")
        return 0
    if args.what in ("build", "qemu") or (args.what == "agree" and args.engine == "c"):
        from firmware_sim import fw_cli
        return fw_cli.run(args)
    if args.what == "agree":
        from codec.datasets import load_dataset
        from firmware_sim.lowering import agreement
        ds = load_dataset(args.data).take(args.count)
        res = agreement(str(args.encoder), ds.images)
        res.update(symbol_agreement=res["agreement"], symbol_agreement_vs_onnxruntime=res["agreement"],
                   symbol_agreement_vs_sim=1.0, engine="sim")
        print(f"symbols agreeing with onnxruntime int8: {res['agree']}/{res['symbols']} = {res['agreement']:.6f} "
              f"({res['images_bit_exact']:.4f} of images bit-exact, max index distance {res['max_index_distance']})")
        _write_json(args.json, res)
        return 0
    # run
    from firmware_sim.lowering import lower
    from firmware_sim.report import check_fits, mcu_report
    from firmware_sim.serial_device import McuDevice

    encoder = args.encoder or _default_encoder()
    program = lower(encoder)
    rep = mcu_report(encoder, args.board, program=program)
    check_fits(rep)
    images, labels = _images(args)
    device_key = counters = None
    if args.key_file:
        from codec.wire.keys import CounterStore, device_key as read_key, state_path
        device_key = read_key(args.key_file, args.device_id).key
        # validated and locked; with no state the device resynchronises first (docs/PROTOCOL.md §4.7)
        counters = CounterStore(state_path(args.key_file, args.device_id), key=device_key, device_id=args.device_id)
    dev = McuDevice(program, args.port, device_id=args.device_id, mtu=args.mtu,
                    timeout_s=args.timeout, retries=args.retries,
                    compute_delay_s=0.0 if args.no_compute_delay else rep["latency_ms"] / 1e3,
                    send_truth=not args.no_truth, device_key=device_key, counters=counters)
    print(f"mcu {rep['board']}: encoder {rep['latency_ms']:.1f} ms (est.), {rep['peak_sram_bytes']} B SRAM; "
          f"sending {len(images)} images on {args.port}", file=sys.stderr)
    try:
        stats = dev.run(images, labels, progress=lambda m: print(m, file=sys.stderr))
    finally:
        dev.close()
        if counters is not None:
            counters.close()    # the exact next counter persisted, the state's lock released
    out = stats.as_dict()
    out.update({"board": rep["board"], "encoder_latency_ms": rep["latency_ms"]})
    print(f"sent {out['count']}, answered {out['answered']}, accuracy {out['accuracy']:.4f}, "
          f"rtt p50 {out['rtt_p50_ms']:.1f} ms, p99 {out['rtt_p99_ms']:.1f} ms, retries {out['retries']}")
    _write_json(args.json, out)
    return 0
