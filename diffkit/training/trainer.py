"""Trainer: the training loop, EMA, optimizer, LR schedule, clipping, checkpoints, resume, logging.

Every random draw (batch indices, t, eps) comes from one torch.Generator that the trainer owns and
checkpoints, so a resumed run is bitwise identical to an uninterrupted one. It knows nothing of sampling.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..cond import ClassConditioning, drop_conds
from ..config import RunConfig
from ..errors import CheckpointError, TrainingError, TrainingInterrupted
from ..memory import require_memory
from .checkpoint import build_network, load_weights, read_state, save_checkpoint, save_config
from .ema import EMA
from .lock import RunLock
from .loss import min_snr_weight, simple_loss

LOG = "train_log.csv"
LOG_FIELDS = ["step", "loss", "lr", "seconds", "skipped"]
MAX_BAD_STEPS = 10  # consecutive non-finite steps that stop training


def lr_at(step: int, cfg) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio (Loshchilov & Hutter 2017)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


@dataclass(frozen=True)
class TrainStep:
    """What a training callback receives after each optimizer step. `loss` is a detached 0-d tensor (reading
    it with float() syncs a device: a viewer reads it every few steps, not every step)."""

    step: int
    loss: torch.Tensor
    lr: float


class Trainer:
    """Trains `config.network` on batches drawn from `source` (draw(B, generator) -> (x0, cond)) into run_dir.

    callback(TrainStep) is called after every optimizer step (for live plots); returning True stops training
    after a checkpoint.
    """

    def __init__(self, config: RunConfig, source, run_dir, progress: bool = True,
                 callback: Callable[[TrainStep], bool | None] | None = None):
        self.config = config.validate()
        self.cfg = config.train
        self.run_dir = Path(run_dir)
        self.source = source
        num_classes = config.network.num_classes
        self.conditioning = ClassConditioning(num_classes) if num_classes else None
        self.progress = progress
        self.callback = callback
        self.schedule = config.schedule.build()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            self.network = build_network(config)
        check_train_memory(config, self.cfg.batch_size)
        self.params = list(self.network.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=self.cfg.lr,
                                           weight_decay=self.cfg.weight_decay, fused=True)
        self.ema = EMA(self.network, self.cfg.ema_halflife, self.cfg.ema_rampup)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.step = 0
        self.skipped = 0       # steps skipped for a non-finite loss or gradient, over the whole run
        self.bad_in_a_row = 0
        self.checkpointed = None  # called with the step after each checkpoint (runs.train_run's --overwrite swap)
        self.lock_held = False    # True: the caller holds run_dir's RunLock (train() takes it otherwise)

    # one step -------------------------------------------------------------
    def _draw_batch(self):
        g, B, T = self.generator, self.cfg.batch_size, self.schedule.num_timesteps
        x0, cond = self.source.draw(B, g)
        t = torch.randint(0, T, (B,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        if self.conditioning is None:
            cond = None  # an unconditional run ignores the data's labels
        else:  # label dropout to the null condition (Ho & Salimans 2022)
            cond = drop_conds(self.conditioning, cond, self.cfg.p_uncond, g)
        return x0, t, eps, cond

    def train_step(self) -> torch.Tensor:
        """One optimizer step. A non-finite loss or gradient skips the update (weights, optimizer and EMA stay
        as they were; the step and its random draws still count) and is counted in self.skipped."""
        x0, t, eps, cond = self._draw_batch()
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # bf16: autocast runs the network's matmuls and convolutions in bfloat16 (weights, optimizer and the
        # loss stay float32: the output is compared with a float32 target)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            loss = simple_loss(self.network, self.schedule, self.config.prediction, x0, t, eps, cond)
        if self.cfg.min_snr_gamma > 0:
            loss = loss * min_snr_weight(self.config.prediction, self.schedule.alpha_bar_at(t),
                                         self.cfg.min_snr_gamma).to(loss.dtype)
        loss = loss.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
        self.step += 1
        if not bool(torch.isfinite(norm) & torch.isfinite(loss)):  # one device sync per step (free on a CPU)
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.bad_in_a_row += 1
            return loss.detach()
        self.bad_in_a_row = 0
        self.optimizer.step()
        self.ema.update(self.params, self.step * self.cfg.batch_size, self.cfg.batch_size)
        return loss.detach()

    # the loop -------------------------------------------------------------
    def train(self) -> dict:
        """Run to config.train.steps, checkpointing along the way (first at a tenth of the interval, so a short
        run is never lost). SIGINT / SIGTERM finish the current step, checkpoint and raise KeyboardInterrupt.
        Returns a small summary."""
        if self.lock_held:
            with _StopSignals() as signals:
                return self._train(signals)
        with RunLock(self.run_dir), _StopSignals() as signals:
            return self._train(signals)

    def _train(self, signals) -> dict:
        cfg = self.cfg
        log_path = self.run_dir / LOG
        if self.step == 0:
            save_config(self.run_dir, self.config)
        _truncate_log(log_path, self.step)  # a killed run may have logged past its checkpoint
        start, t0 = self.step, time.perf_counter()
        seconds_before = _last_seconds(log_path)
        first = max(1, cfg.checkpoint_every // 10)
        loss_sum, n = torch.zeros(()), 0
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc="train", unit="step",
                   dynamic_ncols=True, leave=False, mininterval=0.5)
        with intra_op_threads(cfg.threads), open(log_path, "a", newline="") as f:
            writer = csv.writer(f)
            while self.step < cfg.steps:
                loss = self.train_step()
                if self.bad_in_a_row >= MAX_BAD_STEPS:
                    bar.close()
                    raise TrainingError(f"the loss or its gradient was not finite in {MAX_BAD_STEPS} steps in a row "
                                        f"(up to step {self.step}); the last checkpoint is kept; try a lower --lr, "
                                        "fp32 precision or a smaller grad_clip, and check the data for NaN / inf")
                if self.bad_in_a_row == 0:
                    loss_sum += loss
                    n += 1
                lr = lr_at(self.step - 1, cfg)  # the rate this step used
                stop = bool(self.callback and self.callback(TrainStep(self.step, loss, lr))) or signals.caught
                if self.step % cfg.log_every == 0 or self.step == cfg.steps or stop:
                    mean = float(loss_sum) / n if n else math.nan
                    secs = seconds_before + time.perf_counter() - t0
                    writer.writerow([self.step, f"{mean:.6f}", f"{lr:.6g}", f"{secs:.3f}", self.skipped])
                    f.flush()
                    bar.set_postfix(loss=f"{mean:.4f}")
                    loss_sum, n = torch.zeros(()), 0
                bar.update(1)
                if self.step % cfg.checkpoint_every == 0 or self.step in (first, cfg.steps) or stop:
                    self.save(notify=not signals.caught)
                if stop:
                    break
        bar.close()
        if signals.caught:
            raise TrainingInterrupted(f"stopped at step {self.step} with a checkpoint; continue with --resume")
        return {"steps": self.step - start, "seconds": time.perf_counter() - t0, "skipped": self.skipped}

    # checkpoints ----------------------------------------------------------
    def save(self, notify: bool = True) -> None:
        """A checkpoint (checkpoint.save_checkpoint): EMA weights for sampling and the full resumable state."""
        tensors = {f"model.{k}": v for k, v in self.network.state_dict().items()}
        tensors.update({f"ema.{i}": p for i, p in enumerate(self.ema.params)})
        opt = self.optimizer.state_dict()
        for i, s in opt["state"].items():
            tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
        tensors["rng.train"] = self.generator.get_state()
        meta = {"param_groups": json.dumps(opt["param_groups"]), "skipped": str(self.skipped)}
        save_checkpoint(self.run_dir, self.step, self.ema.state_dict(self.network), tensors, meta,
                        self.cfg.keep_checkpoints)
        if notify and self.checkpointed is not None:
            self.checkpointed(self.step)

    def load_state(self) -> bool:
        """Continue from the newest checkpoint. False when the run never reached one (it starts at step 0)."""
        found = read_state(self.run_dir)
        if found is None:
            return False
        tensors, meta, path = found
        try:
            model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            load_weights(self.network, model, path)
            self.ema.params = [tensors[f"ema.{i}"].clone() for i in range(len(self.ema.params))]
            groups = json.loads(meta["param_groups"])
            for g in groups:
                g["betas"] = tuple(g["betas"])
            state = {}
            for k, v in tensors.items():
                if k.startswith("opt."):
                    _, i, name = k.split(".", 2)
                    state.setdefault(int(i), {})[name] = v
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
            self.generator.set_state(tensors["rng.train"])
            self.step = int(meta["step"])
            self.skipped = int(meta.get("skipped", 0))
        except (KeyError, ValueError, RuntimeError):
            raise CheckpointError(f"{path} is incomplete or foreign; it cannot resume this run") from None
        return True


class _StopSignals:
    """SIGINT and SIGTERM set `caught` instead of killing the loop mid-step, so training ends at a step boundary
    with a checkpoint. A second signal interrupts at once. Only installed in the main thread."""

    def __init__(self):
        self.caught = False
        self._old = {}

    def _handle(self, signum, frame):
        if self.caught:
            raise KeyboardInterrupt
        self.caught = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def check_train_memory(config: RunConfig, batch_size: int) -> None:
    """Refuse, before any work, a batch whose training step would not fit in the memory available now."""
    shape = config.fitted.shape
    if not shape or not hasattr(config.network, "activation_floats"):
        return
    require_memory(4 * batch_size * config.network.activation_floats(shape),
                   f"a training batch of {batch_size} needs about {{need}} GiB for its activations but {{free}} GiB "
                   "are available; use a smaller --batch-size")


@contextmanager
def intra_op_threads(n: int | None):
    """torch's intra-op thread count set to n (0 or None: left alone) inside the block, restored after it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the header and rows up to `step` (a killed run may have logged past its checkpoint)."""
    rows = []
    if step > 0 and path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _last_seconds(path: Path) -> float:
    if not path.exists():
        return 0.0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["seconds"]) if rows else 0.0


def read_log(path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r.get(k) or 0) for r in rows] for k in LOG_FIELDS}
