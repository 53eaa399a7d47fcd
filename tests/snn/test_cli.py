import subprocess
import sys

from snn.cli import SUBCOMMANDS


def _snn(*args, **kw):
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, **kw)


def test_help_lists_every_subcommand():
    proc = _snn("--help")
    assert proc.returncode == 0
    for name in ("train", "eval", "export", "device", "edge", "channel", "mcu", "bench", "demo"):
        assert name in SUBCOMMANDS and name in proc.stdout


def test_no_command_is_usage_error():
    assert _snn().returncode == 2


def test_wire_modules_and_device_import_without_torch():
    code = ("import sys, codec.wire.packing, codec.wire.frame, codec.wire.cobs, codec.wire.reassembly, codec.datasets, device\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bench_wire_json(tmp_path):
    out = tmp_path / "wire.json"
    proc = _snn("bench", "wire", "--frames", "200", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    import json
    result = json.loads(out.read_text())
    assert result["payload_bytes"] == 147 and result["parse_frames_per_s"] > 0


def test_the_dispatcher_makes_openmp_wait_passively():
    """One place sets OMP_WAIT_POLICY (snn/process.py): `snn` itself, before any command imports torch."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, snn.cli\nsnn.cli.main([])\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("PASSIVE"), proc.stdout + proc.stderr
