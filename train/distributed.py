"""Single process by default; the same script under `torchrun` shards with FSDP2.

    python -m train.sft                          # one process, one device
    torchrun --nproc_per_node=8 -m train.sft     # 8 ranks, parameters sharded per block

FSDP2 (`fully_shard`) turns each decoder Block's parameters into DTensors sharded over
the ranks; a Block's full weights exist only while it runs (all-gather before, free
after), and gradients are reduce-scattered. Blocks first, then the root (embedding,
final norm, head), is the order FSDP2 expects. On CUDA parameters compute in bf16 and
gradients reduce in fp32; on CPU (gloo, how the tests run it) everything stays fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pin_cpu_threads(threads: int | None = None) -> int:
    """Fix the number of intra-op CPU threads for the whole run and return it.

    A float sum's value depends on how it is split across threads, so a run is only
    bit-reproducible (and a resumed run only equal to an uninterrupted one) if every
    matmul and reduction is split the same way each time. PyTorch's OpenMP kernels keep
    the count fixed, but MKL starts with dynamic threading on and may choose fewer
    threads for a GEMM than it was given; `torch.set_num_threads` switches that off
    (it calls mkl_set_dynamic(false)). Default: PyTorch's own choice (the cores).
    Costs nothing: the count is the one the run would have used anyway.
    """
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def init_distributed(device: str | None = None) -> DistInfo:
    """Reads torchrun's environment; starts the process group when there are several
    ranks; pins the CPU thread count (see pin_cpu_threads)."""
    pin_cpu_threads()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def shard_model(model: torch.nn.Module, info: DistInfo, blocks=None) -> torch.nn.Module:
    """FSDP2: shard each Block (`blocks`, default `model.layers`), then the root. A no-op
    in a single process."""
    if not info.distributed:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    if info.device.type == "cuda":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for block in model.layers if blocks is None else blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def reshard(model: torch.nn.Module) -> None:
    """Frees FSDP2's unsharded copy of the root's parameters after forwards that no
    backward follows (e.g. scoring under no_grad). FSDP2 keeps the root unsharded after a
    forward, expecting the backward to use them at once (pytorch/pytorch#131965); if no
    backward comes, the next training backward accumulates the root's gradients
    (embeddings, final norm, LM head, value head) into that stale unsharded copy, so
    they grow by one step's gradient per step whatever zero_grad does (measured on 2 gloo
    ranks: the final norm's gradient 1x, 2x, 3x its true value over three steps). A no-op
    in a single process."""
    if hasattr(model, "reshard"):  # an FSDPModule
        model.reshard()


def _reduce(value: torch.Tensor, op) -> torch.Tensor:
    """A reduced copy on the value's own device. NCCL reduces CUDA tensors only, so a CPU
    value (a count, a metric) makes the round trip through the rank's GPU; gloo takes
    CPU tensors as they are."""
    if not dist.is_initialized():
        return value.clone()
    on_gpu = dist.get_backend() == "nccl" and value.device.type != "cuda"
    work = value.to(torch.device("cuda", torch.cuda.current_device())) if on_gpu else value.clone()
    dist.all_reduce(work, op=op)
    return work.to(value.device) if on_gpu else work


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; identity in a single process)."""
    return _reduce(value, dist.ReduceOp.SUM)


def sum_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each named value summed over ranks, in one collective (every rank passes the same
    names in the same order)."""
    totals = all_reduce_sum(torch.tensor([float(v) for v in values.values()], dtype=torch.float64))
    return dict(zip(values, totals.tolist()))


def all_reduce_max(value: torch.Tensor) -> torch.Tensor:
    return _reduce(value, dist.ReduceOp.MAX)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
