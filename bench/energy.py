"""`snn bench energy`: energy per inference of a LoRa device, SemanticNN against the bit-level
baselines of `snn bench accuracy`, from the bytes each really sends.

For each LoRa link (SF7, SF10, SF12 at 125 kHz by default) the accuracy benchmark runs at i.i.d.
BER 1e-2 with that link's MTU (`bench.accuracy.run_accuracy`: same images, same channel, every
byte on the uplink counted, fragments, headers and retransmissions included), and each row's mean
bytes and frames per inference become energy on the board (`firmware_sim.energy`):

- compute: SemanticNN runs its int8 encoder on the MCU (the cost model's cycles at the board's
  clock, `snn mcu report`); the bit-level baselines are charged no compute at all (the raw image
  needs none; PNG/JPEG encoding on the MCU is left out, which favours them);
- radio TX: the frames' time on air with the SX1276's transmit current;
- radio RX: one receive window per inference for the methods that wait for one answer (SemanticNN
  waits once per transmission, resends included; FEC and plain rows once), one per frame for ARQ
  (each frame is acknowledged).

The comparison the README quotes: SemanticNN beside the bit-level row of least energy whose
accuracy is within 2 points of SemanticNN's (``cheapest_within_2_points``), and their ratio.
"""
from __future__ import annotations

import time

LINKS = ("lora-sf7", "lora-sf10", "lora-sf12")
BER = 1e-2
WITHIN = 0.02


def _rx_windows(row: dict) -> float:
    packets = float(row.get("packets") or 1.0)
    if row["method"] == "semanticnn" or row["method"].endswith("-arq"):
        return packets
    return 1.0


def energy_rows(accuracy_rows: list[dict], board, link, encoder_cycles: float, ber: float = BER) -> list[dict]:
    """SemanticNN and the bit-level rows of one accuracy run, each with its energy per inference."""
    from firmware_sim.energy import energy_mj

    out = []
    for row in accuracy_rows:
        if row["channel"] != "iid" or row["ber"] != ber or row["family"] not in ("learned", "bit-level"):
            continue
        if row["family"] == "learned" and row["method"] != "semanticnn":
            continue
        packets = float(row.get("packets") or 1.0)
        cycles = encoder_cycles if row["method"] == "semanticnn" else 0.0
        e = energy_mj(board, cycles, link, [row["bytes_on_air"] / packets], rx_windows=_rx_windows(row),
                      frame_count=packets)
        out.append({"method": row["method"], "family": row["family"], "accuracy": row["accuracy"],
                    "bytes_on_air": row["bytes_on_air"], "frames": packets, "energy_mj": e["total"],
                    "compute_mj": e["compute"], "radio_tx_mj": e["radio_tx"], "radio_rx_mj": e["radio_rx"],
                    "time_on_air_ms": e["time_on_air_ms"]})
    return out


def compare(rows: list[dict], within: float = WITHIN) -> dict:
    """SemanticNN beside the least-energy bit-level row within `within` of its accuracy."""
    sem = next((r for r in rows if r["method"] == "semanticnn"), None)
    if sem is None:
        return {}
    close = [r for r in rows if r["family"] == "bit-level" and r["accuracy"] >= sem["accuracy"] - within]
    best = min(close, key=lambda r: r["energy_mj"]) if close else None
    return {"semanticnn": sem, "cheapest_within_2_points": best,
            "ratio": round(best["energy_mj"] / sem["energy_mj"], 2) if best and sem["energy_mj"] else None}


def run_energy(board_name: str = "stm32f411", links=LINKS, ber: float = BER, count: int | None = None,
               quick: bool = True, encoder=None, log=print) -> dict:
    from bench.accuracy import run_accuracy
    from channel.links import get_link
    from firmware_sim.boards import load_board
    from firmware_sim.report import mcu_report

    t0 = time.time()
    board = load_board(board_name)
    encoder = encoder or _shipped_encoder()
    cycles = mcu_report(encoder, board)["cycles"]
    result = {"benchmark": "energy", "board": board.name, "clock_hz": board.clock_hz, "ber": ber,
              "encoder": str(encoder), "encoder_cycles": cycles, "links": {}}
    for name in links:
        link = get_link(name)
        acc = run_accuracy(quick=quick, count=count, bers=(ber,), channels=("iid",), link=name, deepcod=None,
                           log=log)
        rows = energy_rows(acc["rows"], board, link, cycles, ber)
        result["links"][name] = {"link": link.name, "mtu": link.mtu, "count": acc["config"]["count"],
                                 "rows": rows, **compare(rows)}
    from firmware_sim.energy import SX1276
    result["constants"] = {"mcu": board.power_source, "radio": SX1276.source}
    result["seconds"] = round(time.time() - t0, 1)
    return result


def _shipped_encoder():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent / "codec" / "zoo" / "fmnist_default.int8.onnx"


def format_energy(res: dict) -> str:
    lines = [f"energy per inference on {res['board']} @ {res['clock_hz'] / 1e6:.0f} MHz + SX1276, i.i.d. BER "
             f"{res['ber']:g} (encoder {res['encoder_cycles'] / 1e6:.1f} M cycles)"]
    for lk in res["links"].values():
        lines.append(f"\n{lk['link']} (MTU {lk['mtu']} B, {lk['count']} images)")
        lines.append(f"  {'method':<16} {'accuracy':>8} {'bytes':>9} {'frames':>7} {'energy mJ':>10} "
                     f"{'compute':>8} {'TX':>9} {'RX':>8}")
        for r in sorted(lk["rows"], key=lambda r: r["energy_mj"]):
            lines.append(f"  {r['method']:<16} {r['accuracy']:>8.4f} {r['bytes_on_air']:>9.1f} {r['frames']:>7.2f} "
                         f"{r['energy_mj']:>10.2f} {r['compute_mj']:>8.2f} {r['radio_tx_mj']:>9.2f} "
                         f"{r['radio_rx_mj']:>8.2f}")
        best = lk.get("cheapest_within_2_points")
        if best:
            lines.append(f"  -> least-energy bit-level row within 2 points of SemanticNN: {best['method']} "
                         f"{best['energy_mj']:.2f} mJ = {lk['ratio']:.2f}x SemanticNN's {lk['semanticnn']['energy_mj']:.2f} mJ")
        else:
            lines.append("  -> no bit-level row within 2 points of SemanticNN's accuracy")
    lines.append(f"\nconstants: MCU {res['constants']['mcu']}; radio {res['constants']['radio']}")
    return "\n".join(lines)
