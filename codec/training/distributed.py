"""Data-parallel training under torch.distributed: launch, shards, gradient and metric reduction.

`snn train backbone|codec --nproc N` runs the same loop in N processes. Each global batch of the
seeded permutation (the one a single process would draw) is cut DistributedSampler-style: rank r
takes positions r, r+N, r+2N, ... of it, so the ranks see disjoint shards and together exactly the
single process's batch. Each rank weighs its loss by its share of the global batch and gradients
are summed over ranks, so one step equals one single-process step at the same global batch (batch
norm's statistics are all-reduced too, `CrossRankBatchNorm`; up to float summation order).

Launch: under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT set) the process joins
the group torchrun made; otherwise `launch` spawns N local processes (torch.multiprocessing) that
meet on a free localhost port. gloo on the CPU; on CUDA (--device) each rank takes GPU LOCAL_RANK
and the group uses NCCL. Only rank 0 logs and
writes files. With one process nothing of torch.distributed is touched and the loops run exactly
as before (same seed, same numbers).

Random draws: the permutation comes from a generator every rank seeds alike; augmentation and the
channel noise come from a per-rank generator (seeded from seed, epoch, rank), so ranks do not
repeat each other's noise and a resumed epoch draws what it drew the first time.
"""
from __future__ import annotations

import gc
import os
import socket
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as tdist

from snn.errors import SnnError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of indices (every world_size-th, from `rank`)."""
        return idx[self.rank::self.world_size] if self.enabled else idx

    def shards(self, global_batches):
        """(global batch size, this rank's indices) per global batch. Distributed, a last batch
        too small to give every rank two images is skipped (batch norm needs two per rank)."""
        for idx in global_batches:
            if self.enabled and len(idx) < 2 * self.world_size:
                continue
            yield len(idx), self.shard(idx)

    def share(self, n_local: int, n_global: int) -> float:
        """Weight of this rank's mean loss so that summed gradients equal the global-batch mean."""
        return n_local / n_global if self.enabled else 1.0

    def epoch_generators(self, g: torch.Generator, seed: int, epoch: int) -> tuple[torch.Generator, torch.Generator]:
        """(order, noise) generators for one epoch: both `g` in one process (unchanged runs);
        distributed, a shared order generator and a per-rank noise generator, derived from
        (seed, epoch[, rank]) so that a resumed run draws the same."""
        if not self.enabled:
            return g, g
        base = (seed * 1_000_003 + epoch) * 4099
        return (torch.Generator().manual_seed(base % 2**63),
                torch.Generator().manual_seed((base + 1 + self.rank) % 2**63))

    def sum(self, *values: float) -> list[float]:
        """All-reduce (sum) a few scalars, e.g. correct counts of each rank's test shard."""
        if not self.enabled:
            return list(values)
        on = "cuda" if tdist.get_backend() == "nccl" else "cpu"   # NCCL reduces CUDA tensors only
        t = torch.tensor(values, dtype=torch.float64, device=on)
        tdist.all_reduce(t)
        return t.tolist()

    def sync_gradients(self, params) -> None:
        """Sum gradients over ranks in one flat all-reduce (the losses are pre-weighted by
        `share`). Used where a loop does not go through one module's forward (the codec calls
        encoder, quantizer and decoder separately, and captum takes extra autograd passes), which
        DistributedDataParallel's reducer needs. It is DDP's gradient all-reduce in one bucket after
        backward (no overlap with the backward pass): for these small models a ~1 MB reduce."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def broadcast_state(self, model: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers (batch-norm running statistics) to every rank: at the
        start (one initial model) and before evaluating or saving (each rank's running statistics
        saw only its shards)."""
        if self.enabled:
            with torch.no_grad():
                for t in list(model.parameters()) + list(model.buffers()):
                    tdist.broadcast(t.data, 0)

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()


SINGLE = Dist()


class CrossRankBatchNorm(torch.nn.BatchNorm2d):
    """Batch norm whose training statistics cover the global batch, on any backend: per-channel
    sums and sums of squares are all-reduced (autograd-aware, so the backward pass sums their
    gradients too) before normalising. torch's SyncBatchNorm refuses CPU tensors, and without it
    each rank normalised over batch/N images, which measured 1-2.4 points *above* one process
    on short runs ("ghost" batch norm), not the same training. The same parameters and buffers as
    BatchNorm2d, so checkpoints and bundles do not change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and tdist.is_available() and tdist.is_initialized()
                and tdist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var.view(1, -1, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def cross_rank_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm2d of `model` made a CrossRankBatchNorm in place (same tensors; in one
    process it computes exactly what BatchNorm2d does)."""
    for m in model.modules():
        if type(m) is torch.nn.BatchNorm2d:
            m.__class__ = CrossRankBatchNorm
    return model


def current() -> Dist:
    """The group this process belongs to (SINGLE when torch.distributed is not initialised)."""
    if tdist.is_available() and tdist.is_initialized():
        return Dist(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return SINGLE


def under_torchrun() -> bool:
    return all(v in os.environ for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def backend(device: torch.device | str = "cpu") -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uses_cuda(device: str | None) -> bool:
    """Whether a loop given --device `device` trains on CUDA (auto: when present)."""
    if device in (None, "auto"):
        return torch.cuda.is_available()
    return str(device).startswith("cuda")


def launch(fn: Callable, nproc: int | None, *args, device: str | None = "cpu") -> None:
    """Run fn(*args) in every process of the group: under torchrun, in this process (the group
    torchrun set up); with nproc > 1, in nproc spawned local processes; else here, alone.
    An SnnError in any rank is raised here as one SnnError (the first rank's message). `device`
    is the loop's --device: on CUDA each rank takes GPU LOCAL_RANK and the group uses NCCL."""
    if nproc is not None and nproc < 1:
        raise SnnError(f"--nproc must be at least 1, got {nproc}")
    if under_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if nproc not in (None, world):
            raise SnnError(f"--nproc {nproc} differs from torchrun's WORLD_SIZE {world}: give one of them")
        _run_rank(fn, args, device)
        return
    if not nproc or nproc == 1:
        fn(*args)
        return
    import logging

    import torch.multiprocessing as mp

    # torch logs a warning per surviving rank it terminates after one failed; the failure itself
    # is reported below, as one line
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(nproc)}
    try:
        mp.start_processes(_spawned, args=(nproc, env, errors, fn, args, device), nprocs=nproc, join=True,
                           start_method="spawn")
    except Exception as exc:  # noqa: BLE001 - a rank failed: report the clearest cause
        if not errors.empty():
            raise SnnError(errors.get()) from None
        raise RuntimeError(f"a training process failed: {exc}") from None


def _spawned(rank: int, nproc: int, env: dict, errors, fn: Callable, args: tuple, device: str | None) -> None:
    """Entry of a spawned rank: the torchrun environment, then the group, then fn."""
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    # the cores are shared by the ranks (a loop's own --threads still wins)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    try:
        _run_rank(fn, args, device)
    except SnnError as exc:
        errors.put(str(exc))
        sys.exit(2)


def _run_rank(fn: Callable, args: tuple, device: str | None) -> None:
    cuda = uses_cuda(device)
    if cuda:  # "cuda" in the loop is then this rank's own GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    tdist.init_process_group(backend("cuda" if cuda else "cpu"))
    try:
        fn(*args)
    finally:
        # autograd graphs of CrossRankBatchNorm's all-reduce hold the group: collected before it
        # goes (left to interpreter exit, gloo aborted the process now and then)
        gc.collect()
        tdist.destroy_process_group()
