"""`snn mcu build|qemu` and `snn mcu agree --engine c`: argument parsing for the C firmware.

Kept apart from `firmware_sim/cli.py` (the simulator's commands) so that the firmware path is one
room: the work lives in `codegen`, `host_engine`, `build` and `qemu`; this module only parses.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from snn.errors import SnnError


def add_arguments(sub) -> None:
    b = sub.add_parser("build", help="generate and cross-compile the C firmware of an int8 encoder for a board")
    b.add_argument("encoder", type=Path, help="int8 QDQ ONNX encoder (snn export -o DIR -> DIR/encoder.int8.onnx)")
    b.add_argument("--board", required=True, help="board name (stm32f411, nrf52840, stm32f746, stm32h743)")
    b.add_argument("-o", "--out", type=Path, required=True, help="project folder (created mode 0700: it holds the key)")
    b.add_argument("--key-file", type=Path, default=None, help="per-device keys file (snn keys new) (default: none, "
                                                               "the insecure all-zero key)")
    b.add_argument("--device-id", type=int, default=1, help="this device's id (default 1)")
    b.add_argument("--json", type=Path, default=None, help="write flash_bytes, ram_bytes, fits, elf here (default: "
                                                           "not written)")
    b.add_argument("--no-refuse", action="store_true", help="exit 0 even when the image does not fit the board")
    b.add_argument("--mtu", type=int, default=255,
                   help="largest frame in bytes (default 255; with --radio at most the spreading factor's)")
    b.add_argument("--header-copies", default="auto", choices=["auto", "1", "3", "5"],
                   help="auto (default): copies and fragments of each transmission by expected cost, as the "
                        "Python device (docs/PROTOCOL.md 3.3); or a fixed count, lowered to what the MTU fits")
    b.add_argument("--radio", choices=["sx1276"], default=None,
                   help="send the frames on a raw-LoRa SX1276 (CRC off, implicit header) instead of the UART; "
                        "stm32f411 only; the driver has never run on a chip (default: the UART)")
    b.add_argument("--lora-sf", type=int, default=7, help="spreading factor with --radio (default 7)")
    b.add_argument("--lora-freq", type=int, default=868_100_000, help="carrier in Hz with --radio (default 868100000)")
    b.add_argument("--lora-power", type=int, default=13, help="RFO_HF power in dBm with --radio (default 13)")

    q = sub.add_parser("qemu", help="run the built firmware under qemu-system-arm, images and replies over its UART")
    q.add_argument("--board", required=True)
    q.add_argument("--firmware", type=Path, required=True, help="the folder `snn mcu build` wrote")
    q.add_argument("--to", required=True, help="where the UART's frames go, e.g. udp://127.0.0.1:9000")
    q.add_argument("--data", default="fmnist:test",
                   help="data set spec with an optional :train|:test|:val suffix (no suffix: :test) "
                        "(default fmnist:test)")
    q.add_argument("--count", type=int, default=20)
    q.add_argument("--truth", action="store_true", help="send each image's label in the frame (edge scores it)")
    q.add_argument("--timeout", type=float, default=3.0, help="seconds the firmware waits for a reply (default 3)")
    q.add_argument("--retries", type=int, default=2, help="resends of an unanswered inference (default 2)")
    q.add_argument("--icount", action="store_true",
                   help="run QEMU with -icount shift=0 and report instructions per layer (slower)")
    q.add_argument("--json", type=Path, default=None, help="(default: not written)")


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str))


def load_images(spec: str, count: int | None):
    """(images uint8 NHWC, labels) of a data set spec."""
    from codec.datasets import load_dataset
    ds = load_dataset(spec).take(count)
    return ds.images, ds.labels


def run(args: argparse.Namespace) -> int:
    if args.what == "agree":
        from firmware_sim.host_engine import compare_engines
        images, _ = load_images(args.data, args.count)
        res = compare_engines(args.encoder, images, engine=args.engine)
        print(f"{res['images']} images, {res['symbols']} symbols: C vs simulator {res['symbol_agreement_vs_sim']:.6f} "
              f"(DSP path; plain C {res['symbol_agreement_vs_sim_plain']:.6f}), "
              f"C vs onnxruntime {res['symbol_agreement_vs_onnxruntime']:.6f} "
              f"({res['images_bit_exact_vs_onnxruntime']:.4f} of images bit-exact)")
        _write_json(args.json, res)
        return 0
    if args.what == "build":
        from firmware_sim.build import build_firmware, format_build
        from firmware_sim.build import LoraRadio
        radio = LoraRadio(sf=args.lora_sf, freq_hz=args.lora_freq, power_dbm=args.lora_power) if args.radio else None
        res = build_firmware(args.encoder, args.board, args.out, key_file=args.key_file, device_id=args.device_id,
                             radio=radio, mtu=args.mtu,
                             copies=args.header_copies if args.header_copies == "auto" else int(args.header_copies))
        print(format_build(res))
        _write_json(args.json, res)
        if not res["fits"] and not args.no_refuse:
            print(f"snn mcu: the image does not fit {res['board']} (flash {res['flash_bytes']} of "
                  f"{res['flash_limit_bytes']} B, RAM {res['ram_bytes']} of {res['ram_limit_bytes']} B)", file=sys.stderr)
            return 2
        return 0
    if args.what == "qemu":
        from firmware_sim.qemu import run_qemu
        if args.count is None or args.count < 1:
            raise SnnError("--count must be a positive number of images")
        images, labels = load_images(args.data, args.count)
        res = run_qemu(args.board, args.firmware, args.to, images, labels if args.truth else None,
                       truth_labels=labels, timeout_s=args.timeout, retries=args.retries, icount=args.icount,
                       progress=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"sent {res['count']}, answered {res['answered']}, accuracy {res['accuracy']:.4f}, "
              f"encode {res['encode_p50_ms']:.0f} ms p50 (QEMU wall), rtt p50 {res['rtt_p50_ms']:.0f} ms, "
              f"{res['wall_s']:.1f} s in all")
        _write_json(args.json, res)
        if res["no_counter"] and not res["stopped"]:
            print(f"snn mcu qemu: {res['no_counter']} image(s) had no frame counter: the firmware has no counter "
                  f"state for its key and the edge did not answer its resynchronisation (docs/PROTOCOL.md 4.7)",
                  file=sys.stderr)
        if res["stopped"]:
            print(f"snn mcu qemu: stopped after {res['count']} images: {res['stopped']}", file=sys.stderr)
            return 2
        return 0
    raise SnnError(f"unknown mcu command {args.what!r}")
