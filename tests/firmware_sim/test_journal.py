"""The flash counter journal (firmware/journal.c, counter_store.c) against a NOR-flash model on the
host: erase to 0xFF, program clears bits only, and the power cut at every program and erase step
(then at pairs of steps) of a run long enough to fill and rotate both sectors many times."""
import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolchain import need

from firmware_sim.codegen import FIRMWARE_DIR

HERE = Path(__file__).with_name("journal_model")
TAKES = 12000           # 47 write-aheads of 256 counters: 16 records fill a 256-byte sector, 3 rotations


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    gcc = need("gcc")
    out = tmp_path_factory.mktemp("journal") / "journal.so"
    subprocess.run([gcc, "-O2", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(FIRMWARE_DIR),
                    "-DSNN_JOURNAL_SECTOR0=0x1000u", "-DSNN_JOURNAL_SECTOR1=0x1100u", "-DSNN_JOURNAL_SECTOR_BYTES=256u",
                    str(FIRMWARE_DIR / "journal.c"), str(FIRMWARE_DIR / "state_journal.c"),
                    str(FIRMWARE_DIR / "counter_store.c"), str(HERE / "nor.c"), "-o", str(out)], check=True)
    c = ctypes.CDLL(str(out))
    c.journal_scenario.argtypes = [ctypes.c_uint32, ctypes.c_int, ctypes.POINTER(ctypes.c_long), ctypes.c_int,
                                   ctypes.POINTER(ctypes.c_long), ctypes.POINTER(ctypes.c_int),
                                   ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_long)]
    return c


def run(lib, cuts, seed=1, takes=TAKES):
    arr = (ctypes.c_long * max(1, len(cuts)))(*cuts)
    steps, reboots, skipped = ctypes.c_long(), ctypes.c_int(), ctypes.c_uint32()
    erases = (ctypes.c_long * 2)()
    code = lib.journal_scenario(seed, takes, arr, len(cuts), ctypes.byref(steps), ctypes.byref(reboots),
                                ctypes.byref(skipped), erases)
    return code, steps.value, reboots.value, skipped.value, list(erases)


def test_clean_run_rotates_and_spreads_wear(lib):
    code, steps, reboots, skipped, erases = run(lib, [])
    assert code == 0 and reboots == 0 and skipped == 0
    # one record per 256 counters, 16 records per sector, both sectors erased in turn
    assert steps > 180 and erases[0] >= 1 and erases[1] >= 1 and abs(erases[0] - erases[1]) <= 1


def test_a_cut_at_every_program_and_erase_step(lib):
    _, steps, *_ = run(lib, [])
    worst = 0
    for k in range(1, steps + 1):
        for seed in (1, 7):
            code, _, reboots, skipped, _ = run(lib, [k], seed=seed)
            assert code == 0, (k, seed, code)
            assert reboots == 1
            worst = max(worst, skipped)
    print(f"journal: {2 * steps} power cuts (every one of {steps} program/erase steps, 2 seeds), "
          f"{TAKES} counters each: no counter twice, state never lost, at most {worst} skipped")
    assert worst <= 2 * 256        # a cut skips at most the write-ahead, never reuses


def test_cuts_at_random_pairs_of_steps_and_during_recovery(lib):
    _, steps, *_ = run(lib, [])
    rng = np.random.default_rng(5)
    multi = 0
    for _ in range(400):
        a = int(rng.integers(1, steps))
        b = a + int(rng.integers(1, 6))           # a second cut soon after the first reboot
        cuts = [a, b] + sorted(int(x) for x in rng.integers(b + 1, steps + 8, size=2))
        code, _, reboots, _, _ = run(lib, cuts, seed=int(rng.integers(1, 2 ** 31)))
        assert code == 0, (cuts, code)
        assert reboots >= 1
        multi += reboots >= 2
    print(f"journal: 400 runs of 4 cuts (a pair, then 2 random), {multi} cut again while recovering: all sound")
    assert multi >= 300            # most runs took the second cut while recovering from the first
