"""Budget and cost report of an int8 encoder on a board: flash, peak SRAM, MACs, cycles, latency.

`mcu_report(encoder, board)` lowers the encoder (`lowering`), plans its arena (`planner`), prices
every kernel (`cost_model`) and sizes the frame it sends (`codec.wire.frame`) and its time on air on a
link (`channel.links`), and the energy of one inference (`energy`). Cycles and energy are stated at
the clock the firmware configures (the board profile's ``clock_hz``, `firmware/clock.c`). `check_fits` refuses a model over budget with the numbers that do not fit.
"""
from __future__ import annotations

import numpy as np

from firmware_sim.boards import Board, load_board
from firmware_sim.cost_model import CITATION, step_cycles
from firmware_sim.lowering import Program, lower
from firmware_sim.planner import fusions, plan_program
from snn.errors import SnnError

RUNTIME_CODE_BYTES = 12 * 1024      # scheduler, arena set-up, packing, framing, CRC, COBS
KERNEL_CODE_BYTES = {"conv": 6 * 1024, "conv_1x1": 3 * 1024, "depthwise_conv": 5 * 1024, "sqrt": 512,
                     "div": 1024, "argmin": 512, "argmax": 512}
DEFAULT_KERNEL_CODE = 768           # small elementwise kernels (CMSIS-NN arm_elementwise_*_s8 ~ 0.5-1 KB)
DEFAULT_LINK = "uart-115200"


class BudgetError(SnnError):
    """The model does not fit the board."""


def frame_bytes(metadata: dict, mtu: int, truth: bool = False) -> list[int]:
    """Sizes of the DATA frames one inference needs at this MTU (codec/wire/frame.py, protocol v2:
    one header copy, short counter, no pilots)."""
    from codec.wire.frame import encode_inference

    bits = int(metadata.get("payload_bits") or int(metadata["n_symbols"]) * int(metadata.get("bits_per_symbol", 3)))
    payload = bytes((bits + 7) // 8)
    frames = encode_inference(payload, key=bytes(16), device_id=0, fingerprint=bytes(4), counter=0, mtu=mtu,
                              truth=0 if truth else None)
    return [len(f) for f in frames]


def _layer_rows(program: Program, core: str) -> list[dict]:
    fused = fusions(program)
    rows = []
    for step in program.steps:
        if step.alias:
            continue
        rows.append({"name": step.name, "op": step.op, "kernel": step.kernel,
                     "shape": list(step.out.shape[1:]), "macs": int(step.macs),
                     "cycles": step_cycles(step, core), "param_bytes": step.flash_bytes,
                     "out_bytes": 0 if step.output in fused else step.out.nbytes,
                     "fused": step.output in fused})
    return rows


def mcu_report(encoder, board: Board | str, link: str = DEFAULT_LINK,
               program: Program | None = None) -> dict:
    """The report as a dict (contract keys: board, fits, flash_bytes, peak_sram_bytes, macs, latency_ms)."""
    if isinstance(board, str):
        board = load_board(board)
    program = program or lower(encoder)
    meta = program.metadata
    in_shape = program.infos[program.input_name].shape
    input_bytes = int(np.prod(in_shape[1:]))  # uint8 pixels
    from channel.links import get_link

    lk = get_link(link)
    mtu = min(int(getattr(lk, "mtu", 255) or 255), 255)
    sizes = frame_bytes(meta, mtu) if "n_symbols" in meta else [0]
    stream = lk.name.startswith("uart") if hasattr(lk, "name") else False
    wire = [n + (n // 254 + 2 if stream else 0) for n in sizes]  # COBS code bytes + delimiter on UART
    air_s = sum(lk.time_on_air_s(n) for n in wire)
    plan = plan_program(program, input_bytes, max(wire))
    layers = _layer_rows(program, board.core)
    param_bytes = int(sum(r["param_bytes"] for r in layers))
    kernels = sorted({r["kernel"] for r in layers})
    code_bytes = RUNTIME_CODE_BYTES + sum(KERNEL_CODE_BYTES.get(k, DEFAULT_KERNEL_CODE) for k in kernels)
    flash = param_bytes + code_bytes
    cycles = int(sum(r["cycles"] for r in layers))
    macs = int(sum(r["macs"] for r in layers))
    latency_ms = cycles / board.clock_hz * 1e3
    sram = int(plan.peak_bytes)
    fits_flash = flash <= board.flash_for_model
    fits_sram = sram <= board.sram_for_model
    from firmware_sim.energy import energy_mj

    energy = energy_mj(board, cycles, lk, [float(n) for n in wire])
    return {
        "board": board.name, "core": board.core, "clock_hz": board.clock_hz,
        "fits": bool(fits_flash and fits_sram), "fits_flash": fits_flash, "fits_sram": fits_sram,
        "flash_bytes": flash, "flash_weights_bytes": param_bytes, "flash_code_estimate_bytes": code_bytes,
        "flash_available_bytes": board.flash_for_model, "board_flash_bytes": board.flash_bytes,
        "peak_sram_bytes": sram, "sram_available_bytes": board.sram_for_model,
        "board_sram_bytes": board.sram_bytes,
        "macs": macs, "cycles": cycles, "latency_ms": latency_ms,
        "link": lk.name if hasattr(lk, "name") else link, "frames": len(sizes), "frame_bytes": sizes,
        "wire_bytes": wire, "time_on_air_ms": air_s * 1e3,
        "n_symbols": meta.get("n_symbols"), "levels": meta.get("levels"),
        "layers": layers, "arena": plan.as_dict(),
        "cost_model": CITATION, "energy_mj": energy,
        "encoder": str(getattr(program.model, "path", encoder)),
    }


def check_fits(report: dict) -> None:
    """Raise BudgetError naming every number that does not fit."""
    if report["fits"]:
        return
    parts = []
    if not report["fits_sram"]:
        parts.append(f"peak SRAM {report['peak_sram_bytes']} B > {report['sram_available_bytes']} B available "
                     f"({report['board_sram_bytes']} B minus what the firmware reserves)")
    if not report["fits_flash"]:
        parts.append(f"flash {report['flash_bytes']} B > {report['flash_available_bytes']} B available "
                     f"({report['board_flash_bytes']} B minus what the firmware reserves)")
    raise BudgetError(f"the encoder does not fit {report['board']}: " + "; ".join(parts))


def format_report(r: dict) -> str:
    """The human-readable table."""
    lines = [f"board {r['board']} ({r['core']} @ {r['clock_hz'] / 1e6:.0f} MHz)   encoder {r['encoder']}",
             f"{'layer':<44} {'kernel':<15} {'MACs':>10} {'cycles':>11} {'params B':>9} {'out B':>7}"]
    for row in r["layers"]:
        lines.append(f"{row['name'][-44:]:<44} {row['kernel']:<15} {row['macs']:>10} {row['cycles']:>11} "
                     f"{row['param_bytes']:>9} {('fused' if row['fused'] else row['out_bytes']):>7}")
    ok = lambda b: "fits" if b else "DOES NOT FIT"  # noqa: E731
    lines += [
        f"flash      {r['flash_bytes']:>9} B  (weights+params {r['flash_weights_bytes']} B, code ~"
        f"{r['flash_code_estimate_bytes']} B) of {r['flash_available_bytes']} B  {ok(r['fits_flash'])}",
        f"peak SRAM  {r['peak_sram_bytes']:>9} B  (arena: input, activations, scratch, frame) of "
        f"{r['sram_available_bytes']} B  {ok(r['fits_sram'])}",
        f"MACs       {r['macs']:>9}    cycles ~{r['cycles']}  latency ~{r['latency_ms']:.2f} ms (estimate)",
        f"frame      {sum(r['frame_bytes'])} B in {r['frames']} frame(s); {r['time_on_air_ms']:.2f} ms on air "
        f"on {r['link']}",
        _energy_line(r["energy_mj"]),
        f"cost model: {r['cost_model']}",
    ]
    return "\n".join(lines)


def _energy_line(e: dict) -> str:
    def mj(v):
        return "n/a" if v is None else f"{v:.3f} mJ"
    return (f"energy     {mj(e['total'])} per inference: compute {mj(e['compute'])}, radio TX {mj(e['radio_tx'])}, "
            f"RX {mj(e['radio_rx'])} ({e['note']})")
