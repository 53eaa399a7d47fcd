import json

import pytest

from firmware_sim.boards import board_names, load_board
from firmware_sim.report import BudgetError, check_fits, mcu_report

KEYS = {"board", "fits", "flash_bytes", "peak_sram_bytes", "macs", "latency_ms"}


def test_shipped_boards():
    assert {"stm32f411", "stm32f746", "stm32h743", "nrf52840"} <= set(board_names())
    b = load_board("stm32f411")
    assert (b.sram_bytes, b.flash_bytes, b.clock_hz, b.core) == (131072, 524288, 100_000_000, "cortex-m4")


def test_report_fits_and_latency_scales_with_clock(fixture_encoder):
    f411 = mcu_report(fixture_encoder, "stm32f411")
    h743 = mcu_report(fixture_encoder, "stm32h743")
    assert KEYS <= set(f411) and f411["fits"]
    assert f411["macs"] == h743["macs"] > 0
    assert h743["latency_ms"] < f411["latency_ms"]
    assert f411["time_on_air_ms"] > 0


def test_over_budget_is_refused_with_numbers(fixture_encoder, tmp_path):
    board = tmp_path / "tiny.json"
    board.write_text(json.dumps({"name": "tiny", "core": "cortex-m4", "clock_hz": 16000000,
                                 "sram_bytes": 2048, "flash_bytes": 8192}))
    rep = mcu_report(fixture_encoder, str(board))
    assert not rep["fits"]
    with pytest.raises(BudgetError, match=rf"peak SRAM {rep['peak_sram_bytes']} B > 2048 B.*flash "
                                          rf"{rep['flash_bytes']} B > 8192 B"):
        check_fits(rep)


def test_cli_report_json(fixture_encoder, tmp_path, capsys):
    from snn.cli import main
    out = tmp_path / "r.json"
    assert main(["mcu", "report", "--board", "stm32f411", str(fixture_encoder), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert KEYS <= set(data) and data["board"] == "stm32f411"
    assert "peak SRAM" in capsys.readouterr().out
    board = tmp_path / "tiny.json"
    board.write_text(json.dumps({"name": "tiny", "core": "cortex-m4", "clock_hz": 16000000,
                                 "sram_bytes": 1024, "flash_bytes": 4096}))
    assert main(["mcu", "report", "--board", str(board), str(fixture_encoder)]) == 2
    assert "does not fit tiny" in capsys.readouterr().err


def test_unknown_board_is_a_clear_error():
    from snn.errors import SnnError
    with pytest.raises(SnnError, match="unknown board 'nope'"):
        load_board("nope")
