"""`snn export [BUNDLE] -o DIR`: float and int8 ONNX encoders with metadata, and verify.json."""
from __future__ import annotations

import argparse
import json

from snn.errors import SnnError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", default=None,
                        help="bundle file (.snn); default: the shipped Fashion-MNIST bundle")
    parser.add_argument("-o", "--out", metavar="DIR",
                        help="output folder for encoder.onnx, encoder.int8.onnx, edge.onnx, verify.json (default: "
                             "none; required unless --add-edge)")
    parser.add_argument("--add-edge", action="store_true",
                        help="instead: re-write BUNDLE in place carrying its ONNX edge half (edge.onnx + "
                             "its SHA-256 in the manifest) for a torch-free edge; the codec fingerprint "
                             "does not change")
    parser.add_argument("--calib", type=int, default=1000, metavar="N",
                        help="training images used to calibrate the int8 ranges (default 1000)")
    parser.add_argument("--calib-data", default=None, metavar="SPEC",
                        help="calibration data set spec with its :train|:test|:val suffix (no suffix: :test) "
                             "(default: the bundle's training set, e.g. fmnist:train)")
    parser.add_argument("--data", default=None, metavar="SPEC",
                        help="verification data set spec with an optional :train|:test|:val suffix (no suffix: "
                             ":test) (default: the bundle's test set, e.g. fmnist:test)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="verify on the first N test images only (default: the full test set)")
    parser.add_argument("--method", default="auto", choices=["auto", "minmax", "percentile", "entropy"],
                        help="int8 calibration method; auto keeps the one that agrees best with torch on "
                             "held-out training images (default)")
    parser.add_argument("--activations", default="auto", choices=["auto", "8", "16"],
                        help="activation bits (weights are always int8 per channel); auto uses 8 and "
                             "falls back to 16 only when 8-bit activations miss the symbol agreement bar")
    parser.add_argument("--holdout", type=int, default=1000, metavar="N",
                        help="held-out training images that pick the calibration method (default 1000)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17, default 17)")
    parser.add_argument("--ber", default="0,1e-2", help="BERs of the accuracy check (default 0,1e-2)")
    parser.add_argument("--seeds", type=int, default=1, help="channel seeds per BER > 0 (default 1)")
    parser.add_argument("--latency-runs", type=int, default=1000, metavar="N",
                        help="single-image runs per encoder for the latency median (default 1000; 0 skips)")
    parser.add_argument("--no-edge", action="store_true", help="do not export the edge half to edge.onnx")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a verification bar is missed")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the report here (default: only "
                                                                     "DIR/verify.json)")


def _bers(text: str) -> list[float]:
    try:
        bers = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SnnError(f"--ber takes comma-separated numbers, got '{text}'") from None
    if not bers or any(not 0 <= b <= 0.5 for b in bers):
        raise SnnError(f"--ber values must lie in [0, 0.5], got '{text}'")
    return bers


def run(args: argparse.Namespace) -> int:
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset, split_options
    from export.onnx_export import check_opset
    from export.pipeline import default_specs, export_bundle

    check_opset(args.opset)
    if args.add_edge:
        from export.onnx_export import add_edge_to_bundle
        if args.bundle is None:
            raise SnnError("--add-edge re-writes a bundle: name it (the shipped ones live in codec/zoo/)")
        done = add_edge_to_bundle(args.bundle, opset=args.opset)
        print(f"{done['bundle']}: codec {done['fingerprint']} now carries edge.onnx "
              f"({done['edge_onnx_bytes']} B, sha256 {done['edge_onnx_sha256'][:16]}...)")
        return 0
    if not args.out:
        raise SnnError("snn export needs -o DIR (or --add-edge)")
    bers = _bers(args.ber)
    if args.calib <= 0:
        raise SnnError("the calibration set is empty: --calib must be > 0 (real training images)")
    if args.count is not None and args.count <= 0:
        raise SnnError("--count must be > 0")
    bundle = load_bundle(args.bundle)
    calib_spec, test_spec = default_specs(bundle)
    opts = dict(split_options(bundle.config["backbone"]), shape=bundle.input_shape)
    train = load_dataset(args.calib_data or calib_spec, **opts)
    test = load_dataset(args.data or test_spec, **opts).take(args.count)
    if len(train) == 0:
        raise SnnError(f"the calibration set {args.calib_data or calib_spec} is empty")
    print(f"exporting {bundle!r}")
    report = export_bundle(bundle, args.out, train.images, test.images, test.labels, calib=args.calib,
                           holdout=args.holdout, method=args.method, opset=args.opset,
                           activations=args.activations, bers=bers,
                           seeds=args.seeds, latency_runs=args.latency_runs, edge=not args.no_edge)
    report["calibration"]["data"] = train.name
    report["data"] = test.name
    text = json.dumps(report, indent=1, sort_keys=True)
    from pathlib import Path
    (Path(args.out) / "verify.json").write_text(text)
    if args.json:
        Path(args.json).write_text(text)
    _print_table(report)
    if report["failed_bars"]:
        return 1 if args.strict else 0
    return 0


def _print_table(r: dict) -> None:
    print()
    print(f"{'':22s}{'torch':>10s}{'float ONNX':>12s}{'int8 ONNX':>12s}")
    print(f"{'file bytes':22s}{'':>10s}{r['float_bytes']:>12d}{r['int8_bytes']:>12d}")
    print(f"{'symbols = torch':22s}{'100%':>10s}{r['symbol_agreement_float_vs_torch']:>12.4%}"
          f"{r['symbol_agreement_int8_vs_torch']:>12.4%}")
    for key in r["accuracy"]["torch"]:
        acc = r["accuracy"]
        print(f"{'accuracy BER ' + key:22s}{acc['torch'][key]:>10.4f}{acc['float'][key]:>12.4f}"
              f"{acc['int8'][key]:>12.4f}")
    if "latency" in r:
        lat = r["latency"]
        print(f"{'latency ms (1 thread)':22s}{'':>10s}{lat['float']['median_ms']:>12.3f}"
              f"{lat['int8']['median_ms']:>12.3f}")
    if "backbone_accuracy" in r:
        print(f"{'float backbone':22s}{r['backbone_accuracy']:>10.4f}")
    print(f"\nchecked on {r['test_images']} test images:")
    for c in r.get("checks", []):
        print(f"  {'ok    ' if c['ok'] else 'MISSED'} {c['text']}")
    print("all checks hold" if r["passed"] else f"{len(r['failed_bars'])} check(s) MISSED")
