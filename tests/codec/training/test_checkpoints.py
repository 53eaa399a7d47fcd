"""Training checkpoints and backbone files load with torch.load(weights_only=True): no pickled code."""
import io
import pickle

import pytest
import torch

from codec.training.common import rng_state, save_atomic, seed_everything, set_rng_state
from codec.training.train_backbone import BACKBONE_FORMAT, load_backbone_file
from snn.errors import BundleError


def test_rng_state_round_trips_through_weights_only(tmp_path):
    import random

    import numpy as np

    g = seed_everything(5)
    save_atomic({"rng": rng_state(g)}, tmp_path / "ck")
    expect = (torch.rand(3, generator=g), np.random.rand(3), random.random(), torch.rand(2))
    set_rng_state(g, torch.load(tmp_path / "ck", weights_only=True)["rng"])
    got = (torch.rand(3, generator=g), np.random.rand(3), random.random(), torch.rand(2))
    assert torch.equal(expect[0], got[0]) and (expect[1] == got[1]).all() and expect[2] == got[2]
    assert torch.equal(expect[3], got[3])


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_backbone_file_with_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    pickle.dump({"format": BACKBONE_FORMAT, "version": 1, "payload": _Evil()}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(BundleError, match="not a backbone file"):
        load_backbone_file(path)
    assert "must never run" not in capsys.readouterr().out
