"""The import contracts of pyproject.toml ([tool.importlinter]), enforced in the default suite."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    kept = [line for line in r.stdout.splitlines() if line.startswith("Contracts:")]
    assert kept and "0 broken" in kept[0]
    assert int(kept[0].split()[1]) >= 4, kept[0]


def test_wire_loads_neither_torch_nor_any_other_part_of_the_project():
    code = ("import sys, codec.wire.packing, codec.wire.frame, codec.wire.cobs, codec.wire.reassembly\n"
            "mods = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('codec', 'channel', 'device', 'edge', 'firmware_sim', 'export', 'bench', 'snn'))\n"
            "print('torch' in sys.modules, mods)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    has_torch, mods = r.stdout.strip().split(" ", 1)
    assert has_torch == "False"
    allowed = {"codec", "snn", "snn.errors"}
    assert all(m in allowed or m.startswith("codec.wire") for m in eval(mods)), mods
