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
