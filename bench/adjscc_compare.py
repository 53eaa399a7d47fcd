"""SemanticNN vs the ADJSCC-style baseline on the whole test set, and what the device's BER input is worth.

    python -m bench.adjscc_compare [--count N] [--ber 0,1e-2,5e-2,1e-1,2e-1] [--model iid] [--json PATH]

Three rows per BER, through the benchmark's own path (`bench.accuracy.semantic_rows`: real v2 frames,
header losses and resends, bit flips in the body, the edge told the BER its header decoding measured):
``semanticnn`` (the shipped bundle), ``adjscc`` (its device told the channel's BER, as in
`snn bench accuracy`) and ``adjscc-no-feedback`` (the same weights, its device always told BER 0: no
channel-state feedback, which is what SemanticNN's device works with). The two ADJSCC rows share
their channel draws, so their difference is the device's channel knowledge alone.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def compare(count: int | None = None, bers=(0.0, 1e-2, 5e-2, 1e-1, 2e-1), channel: str = "iid",
            link: str = "lora-sf7", seed: int = 0, log=print) -> dict:
    import torch

    from bench.accuracy import BURST, CAP, Codec, _model, _seed, semantic_rows
    from bench.adjscc import DEFAULT_PATH, ADJSCCBaseline, load_adjscc
    from channel.links import get_link
    from codec.bundle import load_bundle
    from codec.datasets import load_dataset

    class NoFeedback(ADJSCCBaseline):
        device_knows_ber = False  # device_half() at its default, BER 0

    t0 = time.time()
    bundle = load_bundle()
    told = load_adjscc(DEFAULT_PATH, bundle)
    codecs = [Codec("semanticnn", bundle, "shipped"), Codec("adjscc", told, str(DEFAULT_PATH)),
              Codec("adjscc-no-feedback", NoFeedback(told.codec, bundle, told.record), str(DEFAULT_PATH))]
    data = load_dataset("fmnist:test").take(count)
    mtu, cache, rows = get_link(link).mtu, {}, []
    with torch.inference_mode():
        for ber in bers:
            for c in codecs:
                stream = "adjscc" if c.name.startswith("adjscc") else c.name  # both ADJSCC rows: one channel
                rng = np.random.default_rng(_seed(seed, channel, ber, stream))
                r = semantic_rows(c, data.images, data.labels, _model(channel, ber, BURST), rng, mtu, CAP,
                                  cache.setdefault(c.name, {}), plan_ber=ber, ber=ber)
                rows.append({"method": c.name, "channel": channel, "ber": float(ber),
                             "accuracy": round(r["accuracy"], 5), "bytes_on_air": round(r["bytes_on_air"], 2)})
                log(f"{c.name:20s} {channel} BER {ber:<6g} accuracy {100 * r['accuracy']:6.2f} %  "
                    f"bytes on air {r['bytes_on_air']:.1f}")
    return {"rows": rows, "count": len(data.labels), "bundle_fingerprint": bundle.fingerprint.hex(),
            "adjscc": told.record.get("command"), "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adjscc_compare", description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=None, help="test images (default: all)")
    p.add_argument("--ber", default="0,1e-2,5e-2,1e-1,2e-1")
    p.add_argument("--model", default="iid", choices=["iid", "ge"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = compare(args.count, tuple(float(b) for b in args.ber.split(",")), args.model)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
