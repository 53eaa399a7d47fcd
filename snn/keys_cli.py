"""`snn keys new|show`: provision per-device keys (docs/PROTOCOL.md §6.4)."""
from __future__ import annotations

import argparse

from snn.errors import SnnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("new", help="make a keys file with a fresh random 128-bit key per device")
    p.add_argument("--device", action="append", type=int, required=True, metavar="ID",
                   help="device id 0..65535 (repeat for several)")
    fp = p.add_mutually_exclusive_group()
    fp.add_argument("--fingerprint", metavar="HEX", help="the codec the devices run (4 bytes, hex)")
    fp.add_argument("--bundle", metavar="B", help="take the codec fingerprint from this bundle")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="keys file to write (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite FILE (its old keys are lost)")
    s = sub.add_parser("show", help="list the devices of a keys file (never the keys)")
    s.add_argument("file", metavar="FILE")


def run(args: argparse.Namespace) -> int:
    from codec.wire.keys import load_keys, new_entries, write_keys

    if args.keys_command == "show":
        for entry in sorted(load_keys(args.file).values(), key=lambda e: e.device_id):
            fp = entry.fingerprint.hex() if entry.fingerprint else "default codec"
            print(f"device {entry.device_id:5d}  codec {fp}")
        return 0
    fingerprint = None
    if args.fingerprint is not None:
        try:
            fingerprint = bytes.fromhex(args.fingerprint)
        except ValueError:
            fingerprint = b""
        if len(fingerprint) != 4:
            raise SnnError(f"--fingerprint takes 4 bytes in hex (8 digits), not {args.fingerprint!r}")
    elif args.bundle is not None:
        from codec.bundle import load_bundle

        fingerprint = bytes(load_bundle(args.bundle).fingerprint)
    write_keys(args.output, new_entries(list(args.device), fingerprint), force=args.force)
    print(f"snn keys: wrote {len(args.device)} key(s) to {args.output} (mode 0600)")
    return 0
