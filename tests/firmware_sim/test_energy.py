"""Energy per inference (firmware_sim/energy.py): the formulas with the datasheet constants, and the
report's energy_mj."""
import pytest

from channel.links import get_link
from firmware_sim.boards import board_from_dict, load_board
from firmware_sim.energy import RX_GUARD_SYMBOLS, SX1276, energy_mj

SHIPPED = "codec/zoo/fmnist_default.int8.onnx"


def test_parts_follow_the_formulas():
    board = load_board("stm32f411")
    link = get_link("lora-sf7")
    e = energy_mj(board, 50e6, link, [49.0, 20.0], rx_windows=2)
    # compute: 0.5 s at 100 MHz x 100 uA/MHz x 3.3 V
    assert e["compute"] == pytest.approx(0.5 * 10e-3 * 3.3 * 1e3)
    phy = get_link("lora-sf7", crc=False)
    air = phy.time_on_air_s(49) + phy.time_on_air_s(20)
    assert e["radio_tx"] == pytest.approx(air * SX1276.tx_amps * SX1276.volts * 1e3)
    window = RX_GUARD_SYMBOLS * phy.symbol_time_s + phy.time_on_air_s(13)
    assert e["radio_rx"] == pytest.approx(2 * window * SX1276.rx_amps * SX1276.volts * 1e3)
    assert e["total"] == pytest.approx(e["compute"] + e["radio_tx"] + e["radio_rx"])
    # mean-size frames (a benchmark's averages) interpolate between whole sizes
    m = energy_mj(board, 0, link, [34.5], frame_count=2)
    lo, hi = phy.time_on_air_s(34), phy.time_on_air_s(35)
    assert m["radio_tx"] == pytest.approx(2 * (lo + hi) / 2 * SX1276.tx_amps * SX1276.volts * 1e3)


def test_missing_constants_give_none_not_a_guess():
    board = board_from_dict({"name": "x", "core": "cortex-m4", "clock_hz": 48_000_000, "sram_bytes": 1 << 16,
                             "flash_bytes": 1 << 18})
    e = energy_mj(board, 1e6, get_link("lora-sf7"), [10.0])
    assert e["compute"] is None and e["total"] is None and e["radio_tx"] > 0
    u = energy_mj(load_board("stm32f411"), 1e6, get_link("uart-115200"), [10.0])
    assert u["radio_tx"] is None and u["total"] is None and u["compute"] > 0
    with pytest.raises(Exception, match="run_amps"):
        board_from_dict({"name": "x", "core": "cortex-m4", "clock_hz": 1, "sram_bytes": 1, "flash_bytes": 1,
                         "run_amps": "lots"})


def test_report_states_energy_at_the_configured_clock():
    from firmware_sim.report import mcu_report

    r = mcu_report(SHIPPED, "stm32f411", link="lora-sf12")
    e = r["energy_mj"]
    assert set(e) >= {"total", "compute", "radio_tx", "radio_rx"}
    assert r["clock_hz"] == 100_000_000
    assert e["compute"] == pytest.approx(r["cycles"] / 100e6 * 10e-3 * 3.3 * 1e3)
    assert e["total"] > e["radio_tx"] > e["compute"] > 0          # SF12: the radio dominates
    assert "Table 6" in e["constants"]["radio"] and "DS10314" in e["constants"]["mcu"]
