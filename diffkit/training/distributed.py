"""Multi-process training on torch.distributed: who this process is (rank, world), the process group, and how
a global batch is shared out.

diffkit reads the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR / MASTER_PORT), so any
launcher that speaks it (torchrun, `diffkit train --nproc N`, Slurm's srun running torchrun, Accelerate's
launcher) works without code changes. Backend: nccl for CUDA, gloo otherwise.

Randomness. Every rank advances the same training generator (seeded by config.train.seed and checkpointed)
through the same draws of the *global* batch, and keeps its own rows (Trainer._draw_batch). So the union of the ranks'
batches is exactly the batch a single process draws, the averaged gradient is the single-process gradient,
and a run's result does not depend on how many processes trained it (up to float reduction order); resuming
with a different number of processes is resuming the same stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError

# seconds a collective may wait for the other ranks before the job fails (rank 0 writes checkpoints between
# collectives, the only long pause; a dead peer is normally noticed at once, this bounds the rest)
TIMEOUT_S = float(os.environ.get("DIFFKIT_DIST_TIMEOUT", "300"))
PEER_LOST = 3  # exit status of a rank whose peer disappeared (the launcher reports the other rank as the cause)


@dataclass(frozen=True)
class Runtime:
    """Where and how a trainer runs: the device, the process's place in the job, micro-batching, compile."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    batch_per_device: int | None = None  # micro-batch per forward pass (gradient accumulation below the rank batch)
    compile: bool = False                # torch.compile the network for training
    compile_why: str | None = None       # why it compiles when nobody asked (autotune.auto_compile); printed at start
    precision: str | None = None         # auto / fp32 / bf16 / fp16 instead of the config's (e.g. resuming on a GPU)
    threads: int | None = None           # intra-op threads instead of the config's (0: decided on this machine)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes (config, logs, checkpoints, samples)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def micro_batches(self, batch_size: int) -> tuple[int, int]:
        """(rows per rank, micro-batches per rank) for a global batch, checked: the global batch splits evenly
        over the ranks, and the rank's share evenly into micro-batches of at most batch_per_device."""
        if batch_size % self.world_size:
            raise ConfigError(f"the batch size {batch_size} does not split evenly over {self.world_size} processes; "
                              f"use a multiple of {self.world_size}")
        rows = batch_size // self.world_size
        per = self.batch_per_device or rows
        if per <= 0:
            raise ConfigError(f"--batch-per-device must be a positive integer, got {per}")
        per = min(per, rows)
        if rows % per:
            raise ConfigError(f"each of the {self.world_size} processes trains {rows} of the batch of {batch_size}, "
                              f"which --batch-per-device {per} does not divide; give a divisor of {rows}")
        return rows, rows // per


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside a launcher."""
    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        try:
            return default if value is None else int(value)
        except ValueError:
            raise ConfigError(f"the environment variable {name}={value!r} is not an integer; it is set by the "
                              "launcher (torchrun) and must hold the process's rank / the number of processes") from None
    world = read("WORLD_SIZE", 1)
    rank, local = read("RANK", 0), read("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of the job "
                          "(0 <= RANK < WORLD_SIZE)")
    return rank, world, local


def start(device: torch.device, *, batch_per_device: int | None = None, compile: bool = False,
          precision: str | None = None, threads: int | None = None) -> Runtime:
    """This process's Runtime; under a launcher (WORLD_SIZE > 1) also joins the process group, with a timeout
    so a lost rank ends the job instead of hanging it. CUDA ranks take the GPU of their local rank."""
    rank, world, local = env_world()
    if world > 1:
        if device.type == "cuda" and device.index is None:
            if local >= torch.cuda.device_count():
                raise ConfigError(f"local rank {local} has no GPU of its own (this machine has "
                                  f"{torch.cuda.device_count()}); start at most that many processes per machine")
            device = torch.device("cuda", local)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if device.type == "mps":
            raise ConfigError("multi-process training runs on CPUs (gloo) or CUDA GPUs (nccl), not on mps")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=timedelta(seconds=TIMEOUT_S))
    return Runtime(device=device, rank=rank, world_size=world, local_rank=local,
                   batch_per_device=batch_per_device, compile=compile, precision=precision,
                   threads=threads)


def stop() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The sum over ranks (in place; no-op for one process)."""
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor



def barrier(runtime: Runtime) -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if runtime.distributed:
        dist.barrier()


def peer_lost(error: BaseException) -> bool:
    """Whether an exception says a collective failed because another rank went away (gloo: 'Connection closed
    by peer', NCCL: a DistBackendError / watchdog timeout)."""
    if isinstance(error, (dist.DistError, ConnectionError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo", "NCCL"))
