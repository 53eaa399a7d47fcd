"""`snn keys new --device ID [--device ID ...] [--fingerprint HEX | --bundle FILE] -o FILE`,
`snn keys show FILE`: provision per-device AES-128 keys (docs/PROTOCOL.md §4.4).

The file is written with mode 0600 and never overwritten without --force. `show` prints the
entries with their keys masked (the first and last two hex digits), so it is safe in a log.
"""
from __future__ import annotations

import argparse
import json
import zipfile

from snn.errors import SnnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = sub.add_parser("new", help="make fresh keys for devices", description=__doc__.splitlines()[0])
    p.add_argument("--device", type=int, action="append", required=True, metavar="ID",
                   help="device id 0..65535 (repeat for several devices)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--fingerprint", metavar="HEX", help="bind the devices to this codec (8 hex digits) "
                                                            "(default: none, any codec)")
    which.add_argument("--bundle", metavar="FILE",
                       help="bind the devices to the codec of this bundle (.snn) or exported encoder (.onnx) "
                            "(default: none, any codec)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="keys file to write (mode 0600)")
    p.add_argument("--force", action="store_true", help="replace an existing keys file")
    s = sub.add_parser("show", help="list the devices of a keys file (keys masked)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--json", default=None, metavar="PATH", help="write the (masked) entries here (default: not "
                                                                "written)")


def fingerprint_of(path: str) -> bytes:
    """The codec fingerprint of a bundle (its manifest; no torch) or of an exported ONNX encoder."""
    if path.endswith(".onnx"):
        from device.encoder import OnnxEncoder
        return OnnxEncoder(path).info.fingerprint
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json")[:1 << 20])
        return bytes.fromhex(manifest["fingerprint"])
    except FileNotFoundError:
        raise SnnError(f"bundle file {path} does not exist") from None
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError):
        raise SnnError(f"{path} is not a bundle (.snn) or an exported encoder (.onnx)") from None


def run(args: argparse.Namespace) -> int:
    from codec.wire.keys import load_keys, new_keys, write_keys

    if args.keys_command == "show":
        keys = load_keys(args.file)
        rows = [{"id": k.device_id, "key": k.key.hex()[:2] + "…" + k.key.hex()[-2:],
                 "fingerprint": k.fingerprint.hex() if k.fingerprint else None} for k in keys.values()]
        for r in rows:
            print(f"device {r['id']:5d}  key {r['key']}  codec {r['fingerprint'] or 'any served'}")
        print(f"{len(rows)} device(s) in {args.file}")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump({"devices": rows}, fh, indent=1)
        return 0
    fp = None
    if args.fingerprint:
        try:
            fp = bytes.fromhex(args.fingerprint)
        except ValueError:
            raise SnnError(f"--fingerprint takes 8 hex digits, got {args.fingerprint!r}") from None
    elif args.bundle:
        fp = fingerprint_of(args.bundle)
    from codec.wire.edge_state import EdgeState, edge_state_path, locked, write_edge_state
    keys = new_keys(args.device, fp)
    state = edge_state_path(args.output)
    with locked(state):
        path = write_keys(args.output, keys, force=args.force)
        write_edge_state(state, EdgeState())     # every key is new: no counter used under any
    print(f"snn keys: wrote {len(keys)} key(s) to {path} (mode 0600)"
          + (f", bound to codec {fp.hex()}" if fp else ", any served codec") + f"; edge replay state {state}")
    return 0
