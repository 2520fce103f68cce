"""Process-group set-up and collectives for ``torchrun`` runs (gloo on CPU, nccl on GPU).

Nothing happens at import: ``init_distributed`` is called from the training entry point, and a
process not started by ``torchrun`` runs alone (rank 0 of 1) without a process group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def init_distributed(device_name: str) -> DistEnv:
    """Join the process group when launched by torchrun; otherwise a single-process env."""
    device = resolve_device(device_name)
    if not dist.is_torchelastic_launched():
        return DistEnv(0, 1, device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    log.info("rank %d of %d on %s (%s)", rank, world, device, backend)
    return DistEnv(rank, world, device)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Each rank computes the same loss over the gathered batch, so summing the gradients and then
    letting DDP average them over ranks yields exactly the gradient of that one loss.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) over ranks, rank order, keeping gradients."""
    return _GatherWithGrad.apply(x) if env.distributed else x


def gather(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if not env.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(env.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        x = x.clone()
        dist.all_reduce(x)
    return x


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
