"""Several processes on one prompt set, on PyTorch's own engine: ``torchrun --nproc_per_node=G -m glass
run ...`` starts G processes with ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set; each joins the
process group (NCCL on GPUs, gloo on CPUs), uses GPU ``LOCAL_RANK``, computes its share of the prompts
(:mod:`glass.promptrun`) and waits at a barrier before rank 0 merges the outputs (for up to
``GLASS_BARRIER_HOURS``, 24 by default)."""

from __future__ import annotations

import atexit
import datetime
import os

import torch

__all__ = ["setup", "rank", "world", "barrier", "from_rank0"]


def world() -> int:
    """How many processes share the run (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def setup() -> tuple[int, int]:
    """Join the process group once (under torchrun) and select this rank's GPU; returns (rank, world)."""
    if world() > 1 and not torch.distributed.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:  # "cuda" in a config means this rank's GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # ranks wait at the final barrier for the slowest one, up to a prompt behind (minutes on FLUX at
        # the paper's budget): far longer than torch's default 10-minute collective timeout
        hours = float(os.environ.get("GLASS_BARRIER_HOURS", "24"))
        torch.distributed.init_process_group(
            backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=hours)
        )
        atexit.register(_teardown)
    return rank(), world()


def _teardown() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def from_rank0(value):
    """``value`` as rank 0 has it, on every rank (a decision all ranks must share, e.g. whether rank 0
    holds the run's claim); ``value`` itself without torchrun."""
    if world() == 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
