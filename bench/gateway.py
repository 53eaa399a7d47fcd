"""`snn bench gateway`: a device's frames through emulated LoRa gateways into a `--gateway` edge.

A real `snn edge serve --gateway` (the shipped bundle, keyed), `snn channel gateways` (each
gateway hears the device through its own chirp-level LoRa PHY at its own SNR, checks the
device's payload CRC and forwards every packet, failed CRCs as `stat` -1) and `snn device run`
with the Fashion-MNIST test images (bench.stack.LocalStack). Figures: answered fraction,
accuracy, the packets each gateway forwarded by CRC status, the txpk replies the edge sent to
each, and what the device received more than once (a frame answered twice would show there).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from snn.errors import SnnError

__all__ = ["run_gateway", "format_gateway"]


def _edge_counts(metrics_text: str) -> dict:
    """The edge's gateway counters by EUI (its /metrics text)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {}
    for family in text_string_to_metric_families(metrics_text):
        if not family.name.startswith("snn_edge_gateway_"):
            continue
        for s in family.samples:
            if "eui" in s.labels and s.name.endswith("_total"):
                name = s.name[len("snn_edge_gateway_"):-len("_total")]
                kind = s.labels.get("stat") or s.labels.get("fate") or s.labels.get("error") or s.labels.get("kind")
                key = f"{name}_{kind}" if kind else name
                out.setdefault(s.labels["eui"], {})[key] = int(s.value)
    return out


def run_gateway(snr_db: str = "-7.5,-5", sf: int = 7, count: int = 300, crc: bool = True, drop: float = 0.0,
                seed: int = 0, log=print) -> dict:
    from bench.loadgen.server import http_get
    from bench.stack import LocalStack
    from export.shipped import default_int8_encoder

    gateways = len([v for v in snr_db.split(",") if v.strip()])
    sim = ("--gateways", str(gateways), f"--snr-db={snr_db}", "--sf", str(sf), *(() if crc else ("--no-crc",)),
           *(("--drop", str(drop)) if drop else ()))
    encoder = default_int8_encoder()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="snn-gateway-") as tmp, \
            LocalStack(seed=seed, link="gateway", channel_args=sim) as stack:
        out = Path(tmp) / "device.json"
        args = [sys.executable, "-m", "snn", "device", "run", "--encoder", str(encoder), "--to", stack.device_url,
                "--data", "fmnist:test", "--count", str(count), "--link", f"lora-sf{sf}", "--timeout", "3",
                "--truth", "--quiet", "--json", str(out), *stack.device_args(1)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=max(600, 10 * count))
        if not out.is_file():
            raise SnnError(f"snn device run failed ({done.returncode}): {done.stderr.strip()[-400:]}")
        device = json.loads(out.read_text())
        token_file = stack.addresses.get("operator_token_file")
        token = Path(token_file).read_text().strip() if token_file else None
        edge = _edge_counts(http_get(stack.addresses["http"] + "/metrics", timeout=10, token=token))
    air = stack.proxy_summary
    result = {"benchmark": "gateway", "sf": sf, "snr_db": snr_db, "crc": crc, "drop": drop, "seed": seed,
              "count": device["count"], "answered": device["answered"],
              "answered_fraction": device["answered"] / device["count"] if device["count"] else 0.0,
              "accuracy": device.get("accuracy"), "transmissions": device["transmissions"],
              "device_duplicates": device.get("duplicates", 0), "rtt_p50_ms": device.get("rtt_p50_ms"),
              "gateways": air.get("gateways", {}), "edge": edge, "txpk_sent": air.get("txpk"),
              "emitted": air.get("emitted"), "seconds": round(time.time() - t0, 1)}
    result["stat_fail"] = sum(g.get("stat_fail", 0) for g in result["gateways"].values())
    result["stat_none"] = sum(g.get("stat_none", 0) for g in result["gateways"].values())
    log(format_gateway(result))
    return result


def format_gateway(r: dict) -> str:
    lines = [f"SF{r['sf']} SNR {r['snr_db']} dB, CRC {'on' if r['crc'] else 'off'}: answered {r['answered']}/"
             f"{r['count']} ({100 * r['answered_fraction']:.1f} %), accuracy {r['accuracy']}, "
             f"{r['transmissions']} transmissions, {r['txpk_sent']} txpk for them, device got "
             f"{r['device_duplicates']} duplicate(s)"]
    for eui, g in r["gateways"].items():
        e = r["edge"].get(eui, {})
        lines.append(f"  gateway {eui}: heard {g['rx'] - g['lost']} (CRC ok {g['stat_ok']}, failed {g['stat_fail']}, "
                     f"none {g['stat_none']}); edge offered {e.get('copies_offered', 0)}, duplicates "
                     f"{e.get('copies_duplicate', 0)}, txpk {e.get('txpk', 0)}; TX_ACK too late {g['too_late']}; "
                     f"txpk exactly RX1 after one of its uplinks {g['rx1_exact']}")
    return "\n".join(lines)
