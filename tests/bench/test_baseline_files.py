"""The committed learned-baseline checkpoints (bench/zoo): small, made by their commands, loaded safely,
and matching the shipped bundle (a re-shipped default must retrain them: this test says so)."""
from __future__ import annotations

import pytest

from bench import adjscc, deepcod
from codec.bundle import load_bundle


@pytest.fixture(scope="module")
def shipped():
    return load_bundle()


@pytest.mark.parametrize("module, command", [(deepcod, "python -m bench.deepcod"), (adjscc, "python -m bench.adjscc")])
def test_committed_checkpoint_fits_the_shipped_bundle(shipped, module, command):
    path = module.DEFAULT_PATH
    assert path.is_file() and path.stat().st_size < 1_000_000, f"{path}: make it with '{command}'"
    codec = module.load(path, shipped)
    assert codec.n_symbols == shipped.n_symbols and codec.levels == shipped.levels
    rec = codec.record
    assert rec["command"].startswith(command) and rec["train_seconds"] > 0 and 0.5 < rec["clean_test_accuracy"] <= 1


def test_committed_adjscc_is_fed_the_ber(shipped):
    codec = adjscc.load_adjscc(adjscc.DEFAULT_PATH, shipped)
    assert codec.device_knows_ber and codec.config["ber_conditioning"] and codec.gray == shipped.gray


def test_compare_runs_the_three_rows_through_the_benchmark_path():
    from bench.adjscc_compare import compare

    result = compare(count=20, bers=(0.0, 0.1), log=lambda *_: None)
    rows = {(r["method"], r["ber"]): r for r in result["rows"]}
    assert set(rows) == {(m, b) for m in ("semanticnn", "adjscc", "adjscc-no-feedback") for b in (0.0, 0.1)}
    # at BER 0 the device is told 0 either way: the same symbols, the same answers
    assert rows[("adjscc", 0.0)] == dict(rows[("adjscc-no-feedback", 0.0)], method="adjscc")
    assert rows[("adjscc", 0.1)]["bytes_on_air"] == rows[("adjscc-no-feedback", 0.1)]["bytes_on_air"]
