"""`snn bench copies`: header copies and fragments on real stacks over untuned lossy channels.

For each channel a real `snn edge serve` and `snn channel proxy` (bench.stack.LocalStack) are
started and `snn device run` sends the same test images once per header-copies setting (each
run its own device id); every transmission is counted (resends included). Figures per run:
answered fraction, bytes sent per answered inference, frames sent per inference, the BER the
edge reported, and what the proxy did to the bits of each channel (`air`: frames, bits flipped,
measured BER per direction). The channels are not tuned to the rule: the issue's measured case
("untuned": Gilbert–Elliott mean burst 20 bits at BER 3e-2, 5 % bursty fragment loss, downlink
BER 1e-2 and 2 % loss), i.i.d. channels from 1e-3 to 8e-2, bursts of other lengths, and the
bit-true LoRa PHY (`channel.lora_phy`, both directions) at Semtech's SF7 and SF12 demodulator
limits.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from snn.errors import SnnError

__all__ = ["CHANNELS", "run_copies", "format_copies"]

CHANNELS: dict[str, tuple[str, ...]] = {
    "untuned": ("--ber", "3e-2", "--model", "ge", "--burst", "20", "--drop", "0.05", "--drop-burst", "3",
                "--downlink-ber", "1e-2", "--downlink-drop", "0.02"),
    "iid-1e-3": ("--ber", "1e-3", "--downlink-ber", "1e-3"),
    "iid-1e-2": ("--ber", "1e-2", "--downlink-ber", "1e-2", "--drop", "0.02"),
    "iid-3e-2": ("--ber", "3e-2", "--downlink-ber", "3e-2"),
    "iid-6e-2": ("--ber", "6e-2", "--downlink-ber", "6e-2", "--drop", "0.02"),
    "iid-8e-2": ("--ber", "8e-2", "--downlink-ber", "2e-2"),
    "ge-b8-2e-2": ("--ber", "2e-2", "--model", "ge", "--burst", "8", "--downlink-ber", "1e-2"),
    "ge-b60-5e-2": ("--ber", "5e-2", "--model", "ge", "--burst", "60", "--drop", "0.1", "--drop-burst", "2",
                    "--downlink-ber", "2e-2", "--downlink-drop", "0.05"),
    "lora-sf7-limit": ("--lora-phy", "--sf", "7", "--cr", "4/5", "--snr-db", "-7.5"),
    "lora-sf12-limit": ("--lora-phy", "--sf", "12", "--cr", "4/5", "--snr-db", "-20"),
}


def _device_run(encoder, stack, device_id: int, count: int, mtu: int, copies: str, truth: bool,
                out: Path) -> dict:
    args = [sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder), "--to", stack.device_url,
            "--data", "fmnist:test", "--count", str(count), "--mtu", str(mtu), "--header-copies", copies,
            "--quiet", "--json", str(out), *stack.device_args(device_id)]
    if truth:
        args.append("--truth")
    done = subprocess.run(args, capture_output=True, text=True, timeout=max(600, 20 * count))
    if not out.is_file():
        raise SnnError(f"snn device run failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    s = json.loads(out.read_text())   # a device that gave up (exit 1: nothing answered) still reports
    recs = s.get("inferences") or []
    sent = sum(r["bytes_sent"] for r in recs)
    frames = sum(r.get("frames_sent", r["frames"] * r["attempts"]) for r in recs)
    answered = s["answered"]
    return {"copies": copies, "mtu": mtu, "truth": truth, "count": s["count"], "answered": answered,
            "answered_fraction": answered / s["count"] if s["count"] else 0.0,
            "bytes_sent": sent, "bytes_per_answered": sent / answered if answered else None,
            "frames_per_inference": frames / s["count"] if s["count"] else None,
            "transmissions_per_inference": s["transmissions"] / s["count"] if s["count"] else None,
            "accuracy": s.get("accuracy"), "edge_ber_mean": s.get("edge_ber_mean"),
            "copies_used": sorted({r["header_copies"] for r in recs}), "exit_code": done.returncode,
            "fragments_used": sorted({r["frames"] for r in recs})}


def run_copies(channels=("untuned",), mtus=(51, 222), copies=("auto", "1"), count: int = 300,
               truth: bool = True, seed: int = 0, log=print) -> dict:
    from bench.stack import LocalStack
    from export.shipped import default_int8_encoder

    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise SnnError(f"unknown channel(s) {', '.join(bad)}; choose from {', '.join(CHANNELS)}")
    encoder = default_int8_encoder()
    rows, air = [], {}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="snn-copies-") as tmp:
        for name in channels:
            with LocalStack(seed=seed, channel_args=CHANNELS[name]) as stack:
                device_id = 1
                for mtu in mtus:
                    for c in copies:
                        r = _device_run(encoder, stack, device_id, count, mtu, str(c), truth,
                                        Path(tmp) / f"{name}-{mtu}-{c}.json")
                        r["channel"] = name
                        rows.append(r)
                        device_id += 1
                        log(format_row(r))
            air[name] = {d: stack.proxy_summary.get(d, {}) for d in ("uplink", "downlink")}
            log(format_air(name, air[name]))
    return {"benchmark": "copies", "rows": rows, "air": air, "channels": {n: list(CHANNELS[n]) for n in channels},
            "count": count, "truth": truth, "seed": seed, "seconds": round(time.time() - t0, 1)}


def format_row(r: dict) -> str:
    bpa = f"{r['bytes_per_answered']:.1f}" if r["bytes_per_answered"] else "—"
    return (f"{r['channel']:<12} MTU {r['mtu']:>4} copies {r['copies']:<4} answered {r['answered']:>4}/{r['count']:<4} "
            f"({100 * r['answered_fraction']:.1f} %)  {bpa:>6} B/answered  {r['frames_per_inference']:.2f} frames  "
            f"{r['transmissions_per_inference']:.2f} tx  edge BER {r['edge_ber_mean'] or 0:.3g}  "
            f"copies {r['copies_used']} fragments {r['fragments_used']}")


def format_air(name: str, air: dict) -> str:
    """What the channel proxy did to the bits of one channel, both directions."""
    parts = [f"{d} {s.get('frames', 0)} frames, {s.get('bits_flipped', 0)} bits flipped "
             f"(BER {s.get('measured_ber', 0.0):.3g}), {s.get('dropped', 0)} dropped"
             for d, s in air.items()]
    return f"{name:<12} air: " + "; ".join(parts)


def format_copies(result: dict) -> str:
    lines = [format_row(r) for r in result["rows"]]
    return "\n".join(lines + [format_air(n, a) for n, a in result.get("air", {}).items()])
