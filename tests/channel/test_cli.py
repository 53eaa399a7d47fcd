"""channel/cli.py and bench/channel.py: the bench, airtime and ptys subcommands."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.channel import run_bench
from channel.transports import open_transport
from snn.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_iid_flips_at_least_1_gb_per_s_on_1_mib():
    rows = {r["model"]: r for r in run_bench(1 << 20, 1e-3, models=("iid",), repeats=30)}
    assert rows["iid"]["mb_per_s"] >= 1000, rows["iid"]
    assert abs(rows["iid"]["measured_ber"] - 1e-3) < 1e-4


def test_bench_command_table_and_json(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    assert main(["bench", "channel", "--size", "65536", "--repeats", "3", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    for model in ("iid", "ge", "awgn", "lora", "lora-phy"):
        assert model in text
    data = json.loads(out_json.read_text())
    assert {r["model"] for r in data["rows"]} == {"iid", "ge", "awgn", "lora", "lora-phy"}
    assert all(r["mb_per_s"] > 0 and abs(r["ber"] - 1e-3) < 1e-5 for r in data["rows"])
    assert main(["bench", "channel", "--models", "nope"]) == 2


def test_airtime_command(tmp_path, capsys):
    out_json = tmp_path / "air.json"
    assert main(["channel", "airtime", "--link", "lora-sf7", "--link", "lora-sf12",
                 "--sizes", "37,51,147,222", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "102.656" in text and "8036.352*" in text  # * marks frames beyond the SF12 MTU (51)
    rows = json.loads(out_json.read_text())["rows"]
    assert len(rows) == 8 and rows[1]["time_on_air_ms"] == pytest.approx(102.656)
    assert main(["channel", "airtime", "--link", "wifi"]) == 2


def test_ptys_command_makes_a_cable_and_exits_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "snn", "channel", "ptys"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        a, b = proc.stdout.readline().split()
        with open_transport(f"serial://{a}") as left, open_transport(f"serial://{b}") as right:
            left.send(b"\x00ping")
            assert right.recv(5.0)[0] == b"\x00ping"
            right.send(b"pong")
            assert left.recv(5.0)[0] == b"pong"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_lora_phy_validation_command(tmp_path, capsys):
    out_json = tmp_path / "phy.json"
    assert main(["channel", "lora-phy", "--sf", "7,12", "--packets", "2000", "--symbols", "2000",
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "Semtech" in text and "SF12" in text
    data = json.loads(out_json.read_text())
    assert [r["sf"] for r in data["rows"]] == [7, 12]
    for r in data["rows"]:
        assert r["snr_db_for_ser_1e-3"] < r["semtech_limit_db"] < r["snr_db_for_ser_1e-2"] + 3
        assert abs(r["simulated_ser"] - r["model_ser"]) < 4 * r["simulated_ser_95"] + 0.002
    assert main(["channel", "lora-phy", "--sf", "x"]) == 2
