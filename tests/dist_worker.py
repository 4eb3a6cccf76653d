"""A rank of a distributed test job (run under torchrun, or plainly as one process).

    python tests/dist_worker.py OUT fresh DATA STEPS [--stop-at K] [--batch-per-device M] [--cond]
    python tests/dist_worker.py OUT resume

Trains OUT/run through diffkit.runs.train_run with this process's Runtime, then writes what this rank holds
(weights, EMA, optimizer moments) to OUT/rank-R-W.safetensors, outside the run directory, so a test can check
that every rank holds the same model and that it matches a one-process run.
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffkit.runs import default_config, train_run
from diffkit.training import distributed
from diffkit.training.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("mode", choices=["fresh", "resume"])
    p.add_argument("data", nargs="?")
    p.add_argument("steps", nargs="?", type=int)
    p.add_argument("--stop-at", type=int)
    p.add_argument("--batch-per-device", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cond", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    runtime = distributed.start(torch.device("cpu"), batch_per_device=a.batch_per_device)
    held = {}

    def callback(step):
        return a.stop_at is not None and step.step >= a.stop_at

    original = Trainer.train

    def train(self):  # keep a handle on the trainer to dump what this rank holds
        held["trainer"] = self
        return original(self)

    Trainer.train = train
    try:
        if a.mode == "fresh":
            config = default_config(a.data, cond=a.cond)
            config.train.steps, config.train.batch_size = a.steps, a.batch_size
            config.train.checkpoint_every, config.train.log_every = 20, 10
            config.train.ema_halflife = 2000  # an EMA that moves within a few steps
            train_run(config, Path(a.out) / "run", progress=False, callback=callback, runtime=runtime)
        else:
            try:
                train_run(None, Path(a.out) / "run", resume=True, progress=False, runtime=runtime)
            except KeyboardInterrupt:
                pass
    finally:
        Trainer.train = original
    t = held["trainer"]
    tensors = {f"param.{i}": p.detach() for i, p in enumerate(t.params)}
    tensors.update({f"ema.{i}": p for i, p in enumerate(t.ema.params)})
    for i, s in t.optimizer.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v).float() for k, v in s.items()})
    save_file({k: v.contiguous().clone() for k, v in tensors.items()},
              str(Path(a.out) / f"rank-{runtime.rank}-{runtime.world_size}.safetensors"),
              metadata={"step": str(t.step)})
    distributed.stop()


if __name__ == "__main__":
    from diffkit.cli.main import exit_with

    exit_with(main())
