"""Trainer: the training loop, EMA, optimizer, LR schedule, clipping, checkpoints, resume, logging.

Every random draw (batch indices, t, eps) comes from one torch.Generator that the trainer owns and
checkpoints, so a resumed run is bitwise identical to an uninterrupted one. It knows nothing of sampling.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cond import conditioning_for, drop_conds, slice_cond, to_device
from ..config import RunConfig, network_to_dict
from ..devices import autocast, check_precision, grad_scaler
from ..errors import CheckpointError, TrainingError, TrainingInterrupted
from ..machine import intra_op_threads
from ..memory import require_memory
from ..nn import lora
from ..nn.registry import build_network
from ..store.lock import RunLock
from ..store.rundir import load_weights, read_state, save_checkpoint, save_config
from ..store.trainlog import LOG, last_seconds, truncate_log
from .adamw import adamw
from .autotune import Settled, StepProbe, compile_network, core_share, settle
from .distributed import Runtime, all_reduce_sum, barrier
from .ema import EMA
from .objectives import objective_for

MAX_BAD_STEPS = 10  # consecutive non-finite steps that stop training


def lr_at(step: int, cfg) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio (Loshchilov & Hutter 2017), repeated in each of
    cfg.lr_cycles equal parts of the steps (the last takes the remainder)."""
    length = cfg.steps // cfg.lr_cycles
    cycle = min(step // length, cfg.lr_cycles - 1)
    step, steps = step - cycle * length, cfg.steps - cycle * length if cycle == cfg.lr_cycles - 1 else length
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
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
    after a checkpoint. objective: what a step minimises (default: objectives.objective_for the config); one
    with state of its own (a distillation round's frozen teacher) has begin_step(step, network), called before
    each step's draws, and state_tensors() / load_state_tensors(tensors), kept in every checkpoint.
    """

    def __init__(self, config: RunConfig, source, run_dir, progress: bool = True,
                 callback: Callable[[TrainStep], bool | None] | None = None, runtime: Runtime | None = None,
                 init_weights: dict | None = None, objective=None):
        self.config = config.validate()
        self.cfg = config.train
        self.runtime = runtime or Runtime()
        self.device = self.runtime.device
        # what was asked (the config's, or the runtime's override on resume); settle() decides what runs
        self.asked_precision = check_precision(self.runtime.precision or self.cfg.precision)
        self.asked_threads = self.cfg.threads if self.runtime.threads is None else self.runtime.threads
        self.precision, self.settled, self._probe = self.asked_precision, None, None
        self.rows, self.micro = self.runtime.micro_batches(self.cfg.batch_size)
        self.run_dir = Path(run_dir)
        self.source = source
        self.conditioning = conditioning_for(config)
        self.progress = progress and self.runtime.is_main
        self.callback = callback
        self.schedule = config.path()
        self.objective = objective or objective_for(config, self.schedule)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            self.network = build_network(config.network)  # on the CPU, so every device starts from the same weights
        if init_weights is not None:  # a derived run starts from its parent's weights (resume loads its own)
            load_weights(self.network, init_weights, "the parent run's model.safetensors", new=("guidance_embed.",))
        self.lora = config.parent is not None and config.parent.kind == "lora"
        if self.lora:  # adapters on the parent's frozen weights (nn/lora.py); B = 0: it starts as its parent
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed)
                self.network = lora.attach(self.network, config.parent.rank, config.parent.targets)
        check_train_memory(config, self.rows // self.micro)
        self.network.to(self.device)
        self.model = self._wrap(self.network)  # what the forward pass calls: DDP and / or torch.compile around it
        self.params = [p for p in self.network.parameters() if p.requires_grad]
        self.scaler = grad_scaler(self.device, self.precision)
        self.optimizer = adamw(self.params, self.cfg.lr, self.cfg.weight_decay, self.device, scaled=bool(self.scaler))
        self.ema = EMA(self.network, self.cfg.ema_halflife, self.cfg.ema_rampup)
        # every rank draws the same global batch from this generator and keeps its rows (distributed.py)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.step = 0
        self.skipped = 0       # steps skipped for a non-finite loss or gradient, over the whole run
        self.bad_in_a_row = 0
        self.checkpointed = None  # called with the step after each checkpoint (runs.train_run's --overwrite swap)
        self.lock_held = False    # True: the caller holds run_dir's RunLock (train() takes it otherwise)

    def _wrap(self, network: torch.nn.Module) -> torch.nn.Module:
        model = network
        if self.runtime.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # buffers (e.g. the MLP's Fourier features) are built from the seed, the same on every rank: no
            # broadcast of them before every forward pass
            model = DistributedDataParallel(network, device_ids=[self.device] if self.device.type == "cuda" else None,
                                            forward_sync_buffers=False)
        return compile_network(model) if self.runtime.compile else model

    # precision and threads ----------------------------------------------------
    def settle(self) -> Settled:
        """The precision and threads this start trains with (autotune.py: auto is decided on this machine, at
        every start); under several processes every rank takes rank 0's decision. Rank 0 prints what it chose."""
        if self.settled is not None:
            return self.settled
        settled = None
        if self.runtime.is_main:
            settled = settle(self.asked_precision, self.asked_threads, self.device, core_share(self.runtime),
                             self._time_step)
            why = [f"compile: on ({self.runtime.compile_why})"] if self.runtime.compile_why else []
            print("\n".join(why + settled.lines()), file=sys.stderr, flush=True)
        if self.runtime.distributed:  # one collective: rank 0 sends its choice, the others add zeros
            code = all_reduce_sum(Settled.encode(settled, self.device), self.runtime)
            settled = settled or Settled.decode(code)
        self.settled, self.precision = settled, settled.precision
        return settled

    def _time_step(self, *candidates) -> list[float]:
        """The probe of this run's training step (one micro-batch, drawn from a generator of its own)."""
        if self._probe is None:
            x0, draws, cond = self._draw_batch(torch.Generator().manual_seed(0))
            size = self.rows // self.micro
            batch = (x0[:size], [d[:size] for d in draws], slice_cond(cond, 0, size))
            key = {"network": network_to_dict(self.config.network), "objective": type(self.objective).__name__}
            self._probe = StepProbe(self.network, batch, lambda model, b: self.objective.loss(model, *b),
                                    self.device, key)
        return self._probe(*candidates)

    # one step -------------------------------------------------------------
    def _draw_batch(self, generator: torch.Generator | None = None):
        """The global batch's draws (same on every rank), then this rank's rows of it on the device."""
        g, B = generator or self.generator, self.cfg.batch_size
        x0, cond = self.source.draw(B, g)
        draws = self.objective.draw(B, x0.shape[1:], g)  # diffusion: t, eps; VAE: the latent noise
        if self.conditioning is None:
            cond = None  # an unconditional run ignores the data's labels
        else:  # label dropout to the null condition (Ho & Salimans 2022)
            cond = drop_conds(self.conditioning, cond, self.cfg.p_uncond, g)
        lo, hi = self.runtime.rank * self.rows, (self.runtime.rank + 1) * self.rows
        x0, *draws = [v[lo:hi].to(self.device, non_blocking=True) for v in (x0, *draws)]
        return x0, draws, to_device(slice_cond(cond, lo, hi), self.device)

    def _micro_loss(self, x0, draws, cond) -> torch.Tensor:
        """Mean loss of a micro-batch, float32 (autocast covers the network; the objective's arithmetic on its
        outputs runs in float32)."""
        with autocast(self.device, self.precision):
            loss = self.objective.loss(self.model, x0, draws, cond)
        return loss.float().mean()

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the global batch (this rank's rows, in micro-batches; DDP averages the
        gradients over ranks). A non-finite loss or gradient skips the update (weights, optimizer and EMA stay
        as they were; the step and its random draws still count) and is counted in self.skipped. Returns the
        mean loss of this rank's rows (a detached 0-d tensor; the loop averages it over ranks when it logs)."""
        if self.settled is None:  # a caller stepping by hand, outside train()
            self.settle()
        if hasattr(self.objective, "begin_step"):
            self.objective.begin_step(self.step, self.network)
        x0, draws, cond = self._draw_batch()
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total, size = torch.zeros((), device=self.device), self.rows // self.micro
        for i in range(self.micro):
            part = slice(i * size, (i + 1) * size)
            last = i == self.micro - 1
            sync = nullcontext() if last or not self.runtime.distributed else self.model.no_sync()
            with sync:
                loss = self._micro_loss(x0[part], [d[part] for d in draws], slice_cond(cond, part.start, part.stop))
                loss = loss * (size / self.rows) if self.micro > 1 else loss  # the rank's mean over all its rows
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
        self.step += 1
        # the norm is of the averaged gradient, the same on every rank (a non-finite loss on any rank makes it
        # non-finite), so every rank skips alike with no collective of its own; one process also checks the loss.
        # One device sync per step (free on a CPU).
        finite_loss = self.runtime.distributed or bool(torch.isfinite(total))
        if not (finite_loss and bool(torch.isfinite(norm))):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            if self.scaler is not None:  # an fp16 overflow: the scaler lowers its scale and the next step retries
                self.scaler.update()
            if self.scaler is None or not finite_loss or self.scaler.get_scale() < 1.0:
                self.bad_in_a_row += 1
            return total
        self.bad_in_a_row = 0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(self.params, self.step * self.cfg.batch_size, self.cfg.batch_size)
        return total

    def _sync(self, loss_sum: torch.Tensor, n: int, asked: bool, signalled: bool):
        """Several processes, at a log step: one collective for everything the ranks must agree on: the mean loss since the last
        log over all ranks, and (stop, signalled): a stop asked for on any rank (rank 0's callback, a signal to
        any process) stops them all at this same step."""
        flags = torch.stack([loss_sum.float().reshape(()), *(torch.tensor(float(v), device=self.device)
                                                              for v in (n, asked, signalled))])
        loss, n, asked, signalled = all_reduce_sum(flags, self.runtime).tolist()
        return (loss / n if n else math.nan), asked > 0 or signalled > 0, signalled > 0

    # the loop -------------------------------------------------------------
    def train(self) -> dict:
        """Run to config.train.steps, checkpointing along the way (first at a tenth of the interval, so a short
        run is never lost). SIGINT / SIGTERM finish the current step, checkpoint and raise KeyboardInterrupt.
        Returns a small summary. Under several processes only rank 0 locks and writes the run directory, and
        a stop (signal, callback) takes effect at the next log step, where the ranks agree on it."""
        barrier(self.runtime)  # every rank has checked the run directory before rank 0 writes to it
        if self.lock_held or not self.runtime.is_main:
            with _StopSignals() as signals:
                return self._train(signals)
        with RunLock(self.run_dir), _StopSignals() as signals:
            return self._train(signals)

    def _train(self, signals) -> dict:
        cfg, main = self.cfg, self.runtime.is_main
        log_path = self.run_dir / LOG
        if self.step == 0 and main:
            save_config(self.run_dir, self.config)
        if main:
            truncate_log(log_path, self.step)  # a killed run may have logged past its checkpoint
        settled = self.settle()  # before the clock starts: the log's seconds are training time
        start, t0 = self.step, time.perf_counter()
        seconds_before = last_seconds(log_path)
        first = max(1, cfg.checkpoint_every // 10)
        loss_sum, n, signalled, asked = torch.zeros((), device=self.device), 0, False, False
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc="train", unit="step",
                   dynamic_ncols=True, leave=False, mininterval=0.5)
        with intra_op_threads(settled.threads), \
                (open(log_path, "a", newline="") if main else nullcontext()) as f:
            writer = csv.writer(f) if main else None
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
                asked = asked or bool(main and self.callback and self.callback(TrainStep(self.step, loss, lr)))
                # one process decides at every step; several agree at log steps (one collective per log)
                boundary = self.step % cfg.log_every == 0 or self.step == cfg.steps
                if self.runtime.distributed:
                    stop = False
                    if boundary:
                        mean, stop, signalled = self._sync(loss_sum, n, asked, signals.caught)
                else:
                    stop, signalled = asked or signals.caught, signals.caught
                    if boundary or stop:
                        mean = float(loss_sum) / n if n else math.nan
                if main and (boundary or stop):
                    secs = seconds_before + time.perf_counter() - t0
                    writer.writerow([self.step, f"{mean:.6f}", f"{lr:.6g}", f"{secs:.3f}", self.skipped,
                                     self.precision, torch.get_num_threads()])
                    f.flush()
                    bar.set_postfix(loss=f"{mean:.4f}")
                if boundary or stop:
                    loss_sum, n = torch.zeros((), device=self.device), 0
                bar.update(1)
                if main and (self.step % cfg.checkpoint_every == 0 or self.step in (first, cfg.steps) or stop):
                    self.save(notify=not signalled)
                if stop:
                    break
        bar.close()
        if signalled:
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
        if hasattr(self.objective, "state_tensors"):
            tensors.update({f"objective.{k}": v for k, v in self.objective.state_tensors().items()})
        meta = {"param_groups": json.dumps(opt["param_groups"]), "skipped": str(self.skipped)}
        if self.scaler is not None:
            meta["grad_scaler"] = json.dumps(self.scaler.state_dict())
        model = self.ema.state_dict(self.network)
        save_checkpoint(self.run_dir, self.step, lora.adapter_state(model) if self.lora else model, tensors, meta,
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
            self.ema.params = [tensors[f"ema.{i}"].to(self.device).clone() for i in range(len(self.ema.params))]
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
            if self.scaler is not None and "grad_scaler" in meta:
                self.scaler.load_state_dict(json.loads(meta["grad_scaler"]))
            if hasattr(self.objective, "load_state_tensors"):
                self.objective.load_state_tensors({k[10:]: v for k, v in tensors.items() if k.startswith("objective.")})
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
