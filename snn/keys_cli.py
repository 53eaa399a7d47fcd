"""`snn keys new|add|revoke|rotate|show`: provision per-device AES-128 keys and manage a fleet's keys
without restarting the edge (docs/PROTOCOL.md §4.4, §4.8).

    snn keys new --device ID [--device ID ...] [--fingerprint HEX | --bundle FILE] [--integrity] -o FILE
    snn keys add --device ID [--device ID ...] [--fingerprint HEX | --bundle FILE] [--integrity] FILE
    snn keys revoke --device ID [--device ID ...] FILE
    snn keys rotate --device ID [--device ID ...] FILE
    snn keys show FILE

Every command writes the keys file atomically with mode 0600 and keeps the edge's replay state
``FILE.edge-state`` beside it (created by `new`; a revoked or re-keyed device's entry is dropped,
so its next key starts as a new device while frames under the old key fail their MIC). A running
edge picks the change up on SIGHUP (`kill -HUP PID`). `show` masks the keys (first and last two
hex digits), so it is safe in a log.
"""
from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

from snn.errors import SnnError

_DEVICE_HELP = "device id 0..65535 (repeat for several devices)"


def _codec_options(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--fingerprint", metavar="HEX", help="bind the devices to this codec (8 hex digits) "
                                                            "(default: none, any codec)")
    which.add_argument("--bundle", metavar="FILE",
                       help="bind the devices to the codec of this bundle (.snn) or exported encoder (.onnx) "
                            "(default: none, any codec)")
    p.add_argument("--integrity", action="store_true",
                   help="payload-integrity mode: the MIC also covers the encrypted payload, so a frame with "
                        "any changed payload bit is refused (against an active attacker who knows the "
                        "plaintext; costs every frame with a payload bit error, docs/PROTOCOL.md §4.6)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = sub.add_parser("new", help="make a keys file with fresh keys for devices", description=__doc__.splitlines()[0])
    p.add_argument("--device", type=int, action="append", required=True, metavar="ID", help=_DEVICE_HELP)
    _codec_options(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="keys file to write (mode 0600)")
    p.add_argument("--force", action="store_true", help="replace an existing keys file (every device gets a new key)")
    a = sub.add_parser("add", help="add devices with fresh keys to a keys file (the edge reloads on SIGHUP)")
    a.add_argument("--device", type=int, action="append", required=True, metavar="ID", help=_DEVICE_HELP)
    _codec_options(a)
    a.add_argument("file", metavar="FILE")
    r = sub.add_parser("revoke", help="remove devices from a keys file (the edge reloads on SIGHUP)")
    r.add_argument("--device", type=int, action="append", required=True, metavar="ID", help=_DEVICE_HELP)
    r.add_argument("file", metavar="FILE")
    t = sub.add_parser("rotate", help="give devices new keys (same codec); old frames stay refused")
    t.add_argument("--device", type=int, action="append", required=True, metavar="ID", help=_DEVICE_HELP)
    t.add_argument("file", metavar="FILE")
    s = sub.add_parser("show", help="list the devices of a keys file (keys masked)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--json", default=None, metavar="PATH", help="write the (masked) entries here (default: not "
                                                                "written)")


def fingerprint_of(path: str) -> bytes:
    """The codec fingerprint of a bundle (its manifest; no torch) or of an exported ONNX encoder."""
    if path.endswith(".onnx"):
        from device.encoder import OnnxEncoder
        return OnnxEncoder(path).info.fingerprint
    from codec.bundle_file import read_manifest
    from snn.errors import BundleError
    try:
        manifest = read_manifest(path)
        return bytes.fromhex(manifest["fingerprint"])
    except BundleError:
        raise
    except (KeyError, ValueError, TypeError):
        raise SnnError(f"{path} is not a bundle (.snn) or an exported encoder (.onnx)") from None
    except zipfile.BadZipFile:
        raise SnnError(f"{path} is not a bundle (.snn) or an exported encoder (.onnx)") from None


def _fingerprint(args) -> bytes | None:
    if getattr(args, "fingerprint", None):
        try:
            fp = bytes.fromhex(args.fingerprint)
        except ValueError:
            fp = b""
        if len(fp) != 4:
            raise SnnError(f"--fingerprint takes 8 hex digits, got {args.fingerprint!r}")
        return fp
    if getattr(args, "bundle", None):
        return fingerprint_of(args.bundle)
    return None


def _show(args) -> int:
    from codec.wire.keys import load_keys
    keys = load_keys(args.file)
    rows = [{"id": k.device_id, "key": k.key.hex()[:2] + "…" + k.key.hex()[-2:],
             "fingerprint": k.fingerprint.hex() if k.fingerprint else None, "integrity": k.integrity}
            for k in keys.values()]
    for r in rows:
        print(f"device {r['id']:5d}  key {r['key']}  codec {r['fingerprint'] or 'any served'}"
              + ("  integrity" if r["integrity"] else ""))
    print(f"{len(rows)} device(s) in {args.file}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"devices": rows}, fh, indent=1)
    return 0


def _new(args) -> int:
    from codec.wire.edge_state import EdgeState, edge_state_path, locked, write_edge_state
    from codec.wire.keys import new_keys, write_keys

    fp = _fingerprint(args)
    keys = new_keys(args.device, fp, integrity=args.integrity)
    out = Path(args.output)
    state = edge_state_path(out)
    with locked(state):
        path = write_keys(out, keys, force=args.force)
        write_edge_state(state, EdgeState())     # every key is new: no counter used under any
    print(f"snn keys: wrote {len(keys)} key(s) to {path} (mode 0600)"
          + (f", bound to codec {fp.hex()}" if fp else ", any served codec")
          + (", payload integrity on" if args.integrity else "") + f"; edge replay state {state}")
    return 0


def _change(args) -> int:
    """add / revoke / rotate: read, change and write the keys file and its replay state under the lock."""
    from codec.wire.edge_state import edge_state_path, locked, update_edge_state
    from codec.wire.keys import check_device_ids, load_keys, new_key, write_keys

    path = Path(args.file)
    check_device_ids(args.device)
    state = edge_state_path(path)
    with locked(state):
        keys = load_keys(path)
        if args.keys_command == "add":
            fp = _fingerprint(args)
            there = [d for d in args.device if d in keys]
            if there:
                raise SnnError(f"{path} already has device {there[0]}: 'snn keys rotate' gives it a new key")
            for dev in args.device:
                keys[dev] = new_key(dev, fp, args.integrity)
            verb = "added"
        else:
            missing = [d for d in args.device if d not in keys]
            if missing:
                raise SnnError(f"{path} has no device {missing[0]} (it holds {sorted(keys)[:10]})")
            for dev in args.device:
                old = keys.pop(dev)
                if args.keys_command == "rotate":
                    keys[dev] = new_key(dev, old.fingerprint, old.integrity)
            verb = "revoked" if args.keys_command == "revoke" else "rotated"
        # the replay state first: an entry of a dropped key must never be read as the new key's
        kept = state.exists()
        if kept:
            update_edge_state(state, keys, forget=set(args.device))
        write_keys(path, keys, force=True)
    ids = ", ".join(map(str, args.device))
    print(f"snn keys: {verb} device(s) {ids} in {path} ({len(keys)} device(s) now); a running edge "
          f"reloads it on SIGHUP" + ("" if kept else f"; {state} does not exist (left so: the edge decides, "
                                                      f"see --reset-replay-state)"))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.keys_command == "show":
        return _show(args)
    if args.keys_command == "new":
        return _new(args)
    return _change(args)
