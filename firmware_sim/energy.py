"""Energy per inference of a device: compute on the MCU, the radio's transmit time, and listening
for the answer (`energy_mj`, in mJ).

    compute  = cycles / f_clk * I_run * V_mcu          (the board profile's cited run current)
    radio_tx = sum over frames of T_air(frame) * I_tx * V_radio
    radio_rx = sum over receive windows of (guard + T_air(reply)) * I_rx * V_radio

`T_air` is the link model's time on air (`channel.links`, Semtech AN1200.13) of the frame actually
sent, with the PHY's own CRC off (the payload's errors must reach the edge; integrity, where a
method has it, is inside its payload) and the explicit header on. A receive window opens
`RX_GUARD_SYMBOLS` symbols before the answer's preamble (timing margin) and stays open until the
answer ends; an inference that waits for no answer per frame has one window, an ARQ transfer one per
frame (each is acknowledged). Sleep current between events is not counted. The radio model is the
Semtech SX1276 (`SX1276`); every constant below names the datasheet row it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.boards import Board

RX_GUARD_SYMBOLS = 8          # receiver on this many symbols before the answer's preamble (our margin)
REPLY_BYTES = 13              # a v2 REPLY with one header copy (docs/PROTOCOL.md)


@dataclass(frozen=True)
class Radio:
    """Supply currents of a LoRa transceiver in its two active states."""

    name: str
    tx_amps: float
    tx_power_dbm: float
    rx_amps: float
    volts: float
    source: str


SX1276 = Radio(
    "SX1276", tx_amps=29e-3, tx_power_dbm=13.0, rx_amps=10.8e-3, volts=3.3,
    source=("Semtech SX1276/77/78/79 datasheet rev 7 (2020), Table 6 'Power Consumption Specification' "
            "(VDD 3.3 V, 25 C): IDDT 'RFOP = +13 dBm, on RFO_HF pin' 29 mA (the row nearest the 14 dBm "
            "EU868 limit); IDDR 'LnaBoost Off, band 1' (862-1020 MHz) 10.8 mA"))


def mcu_watts(board: Board) -> float | None:
    """The MCU's power in run mode at its configured clock, from the board profile (None if the
    profile cites none)."""
    if board.run_amps_per_mhz is not None:
        amps = board.run_amps_per_mhz * board.clock_hz / 1e6
    elif board.run_amps is not None:
        amps = board.run_amps
    else:
        return None
    return amps * board.supply_volts


def phy_link(link):
    """The link as the raw-LoRa radio runs it: payload CRC off, explicit header (see module doc)."""
    from dataclasses import replace

    from channel.links import LoRaLink

    return replace(link, crc=False) if isinstance(link, LoRaLink) else link


def energy_mj(board: Board, cycles: float, link, frames: list[float], rx_windows: float = 1.0,
              reply_bytes: int = REPLY_BYTES, radio: Radio = SX1276, frame_count: float | None = None) -> dict:
    """Energy of one inference: `cycles` on `board`, `frames` (bytes of each frame sent) on `link`,
    or, with `frame_count`, that many frames of the mean size frames[0] (a benchmark's averages);
    `rx_windows` answers listened for. Parts are None when a constant is missing (a board profile
    without a cited run current; a link that is not a LoRa radio)."""
    from channel.links import LoRaLink

    watts = mcu_watts(board)
    compute = cycles / board.clock_hz * watts * 1e3 if watts is not None else None
    phy = phy_link(link)
    if isinstance(phy, LoRaLink):
        if frame_count is not None:
            air_tx = frame_count * _airtime(phy, frames[0]) if frames and frame_count else 0.0
        else:
            air_tx = sum(_airtime(phy, n) for n in frames)
        window = RX_GUARD_SYMBOLS * phy.symbol_time_s + phy.time_on_air_s(reply_bytes)
        tx = air_tx * radio.tx_amps * radio.volts * 1e3
        rx = rx_windows * window * radio.rx_amps * radio.volts * 1e3
        count = frame_count if frame_count is not None else len(frames)
        note = (f"{radio.name} at +{radio.tx_power_dbm:g} dBm; {count:g} frame(s), "
                f"{air_tx * 1e3:.1f} ms on air; {rx_windows:g} receive window(s) of {window * 1e3:.1f} ms")
    else:
        tx = rx = None
        air_tx = None
        note = f"no radio model for {getattr(link, 'name', link)} (LoRa links only)"
    parts = {"compute": compute, "radio_tx": tx, "radio_rx": rx}
    total = sum(parts.values()) if all(v is not None for v in parts.values()) else None
    return {"total": total, **parts, "time_on_air_ms": air_tx * 1e3 if air_tx is not None else None,
            "note": note, "constants": {"mcu": board.power_source or "no cited run current in the board profile",
                                        "radio": radio.source,
                                        "rx_window": f"{RX_GUARD_SYMBOLS} symbols before the reply + its "
                                                     f"{reply_bytes}-byte time on air"}}


def _airtime(link, n_bytes: float) -> float:
    """Time on air of a frame of n bytes; a mean size is interpolated between its neighbours."""
    lo = int(n_bytes)
    if lo == n_bytes:
        return link.time_on_air_s(lo)
    frac = n_bytes - lo
    return (1 - frac) * link.time_on_air_s(lo) + frac * link.time_on_air_s(lo + 1)
