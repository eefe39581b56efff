"""Process-group glue for sharded evaluation under ``torchrun`` (gloo on CPU, NCCL on GPU).

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) every collective here is a
no-op, so the same code path serves one process and many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ProcessGroup:
    """This process's rank, the world size and the device it evaluates on."""

    rank: int
    world: int
    device: str
    initialised_here: bool = False

    @classmethod
    def from_environment(cls, device: str) -> ProcessGroup:
        """Join the ``torchrun`` process group if there is one; ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, device)
        import torch.distributed as dist

        rank = int(os.environ["RANK"])
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        here = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
            here = True
        return cls(rank, world, device, here)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """The leader's ``value`` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def close(self) -> None:
        """Tear down the group this object created: a barrier first, so no rank destroys its gloo
        connections while a peer still uses them (which aborts the peer: "terminate called without
        an active exception")."""
        if self.initialised_here:
            import torch.distributed as dist

            if self.world > 1:
                dist.barrier()
            dist.destroy_process_group()
