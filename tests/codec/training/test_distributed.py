"""Data-parallel training (codec/training/distributed.py): 2 real gloo processes on the CPU.

One spawn checks the arithmetic (two ranks' weighted, all-reduced gradients equal one process's
gradient on the whole uneven batch); one `snn train backbone --nproc 2` run checks the command:
rank 0 alone logs and writes, --json records world_size and test_accuracy.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec.datasets import FMNIST_DIR, fmnist_dir
from codec.training.distributed import SINGLE, Dist, current, launch
from snn.errors import SnnError

ROOT = Path(__file__).resolve().parents[3]
needs_fmnist = pytest.mark.skipif(not (fmnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason=f"Fashion-MNIST is not installed under {FMNIST_DIR}")


def _model_and_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    return model, x, y


def _rank_gradients(out: str) -> None:
    """In each rank: this rank's shard of one global batch of 7, weighted and all-reduced."""
    dist = current()
    model, x, y = _model_and_data()
    (n_global, idx), = list(dist.shards([torch.arange(7)]))
    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
    (loss * dist.share(len(idx), n_global)).backward()
    dist.sync_gradients(model.parameters())
    count, = dist.sum(len(idx))
    torch.save({"grads": [p.grad for p in model.parameters()], "count": count, "shard": idx},
               f"{out}.{dist.rank}")


def test_two_ranks_sum_to_the_single_process_gradient(tmp_path):
    launch(_rank_gradients, 2, str(tmp_path / "g"))
    model, x, y = _model_and_data()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ranks = [torch.load(tmp_path / f"g.{r}") for r in (0, 1)]
    assert [r["shard"].tolist() for r in ranks] == [[0, 2, 4, 6], [1, 3, 5]]   # disjoint, uneven
    assert ranks[0]["count"] == ranks[1]["count"] == 7
    for r in ranks:
        for got, want in zip(r["grads"], (p.grad for p in model.parameters())):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _bn_model_and_data():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randn(9, 2, 6, 6) * 3 + 1, torch.randint(0, 3, (9,))
    return model, x, y


def _rank_bn_gradients(out: str) -> None:
    """Each rank: its shard of one global batch of 9 through batch norm over the global batch."""
    from codec.training.distributed import cross_rank_batch_norm

    dist = current()
    model, x, y = _bn_model_and_data()
    cross_rank_batch_norm(model).train()
    (n_global, idx), = list(dist.shards([torch.arange(9)]))
    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
    (loss * dist.share(len(idx), n_global)).backward()
    dist.sync_gradients(model.parameters())
    torch.save({"grads": [p.grad for p in model.parameters()], "bn": model[1].state_dict()}, f"{out}.{dist.rank}")


def test_two_ranks_with_batch_norm_equal_one_process(tmp_path):
    """Batch norm's statistics over the global batch (all-reduced, gradients too): two ranks'
    gradients and running statistics equal one process's on the whole batch."""
    launch(_rank_bn_gradients, 2, str(tmp_path / "g"))
    model, x, y = _bn_model_and_data()
    model.train()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for r in (0, 1):
        got = torch.load(tmp_path / f"g.{r}")
        for g, want in zip(got["grads"], (p.grad for p in model.parameters())):
            torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-5)
        for k, v in model[1].state_dict().items():
            torch.testing.assert_close(got["bn"][k], v, rtol=1e-4, atol=1e-5)


def test_shards_and_generators_alone():
    d = Dist(rank=1, world_size=2)
    # every second index from the rank's own; a tail too small for two images per rank is skipped
    assert [(n, i.tolist()) for n, i in d.shards([torch.arange(6), torch.arange(6, 10), torch.arange(10, 13)])] == \
        [(6, [1, 3, 5]), (4, [7, 9])]
    assert [n for n, _ in SINGLE.shards([torch.arange(8), torch.arange(1)])] == [8, 1]
    g = torch.Generator().manual_seed(5)
    assert SINGLE.epoch_generators(g, 5, 0) == (g, g)
    o0, n0 = Dist(0, 2).epoch_generators(g, 5, 3)
    o1, n1 = Dist(1, 2).epoch_generators(g, 5, 3)
    assert torch.equal(torch.randperm(50, generator=o0), torch.randperm(50, generator=o1))
    assert not torch.equal(torch.rand(8, generator=n0), torch.rand(8, generator=n1))


def test_nproc_must_be_positive_and_agree_with_torchrun(monkeypatch):
    with pytest.raises(SnnError, match="at least 1"):
        launch(print, 0)
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SnnError, match="WORLD_SIZE 2"):
        launch(print, 3)


@needs_fmnist
def test_snn_train_backbone_with_two_processes(tmp_path):
    out, js = tmp_path / "bb.pt", tmp_path / "bb.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "snn", "train", "backbone", "--arch", "resnet8", "--width", "0.5",
                          "--epochs", "1", "--count", "300", "--nproc", "2", "-o", str(out), "--json", str(js)],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("epoch 1/1") == 1, run.stdout          # rank 0 alone logs
    figures = json.loads(js.read_text())
    assert figures["world_size"] == 2 and 0.0 <= figures["test_accuracy"] <= 1.0
    assert figures["global_batch"] == 128 and len(figures["epoch_seconds"]) == 1
    record = torch.load(out, weights_only=False)
    assert record["world_size"] == 2 and "--nproc 2" in record["command"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.json", "bb.pt", "bb.pt.ckpt"]


def test_a_bad_input_in_the_ranks_is_one_clear_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "snn", "train", "backbone", "--data", f"folder:{tmp_path}/none",
                          "--nproc", "2", "-o", str(tmp_path / "x.pt")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
