"""The peer of benchmarks/images.py: diffusers' UNet2DModel trained with the Hugging Face recipe.

The recipe is diffusers' examples/unconditional_image_generation/train_unconditional.py, made
class-conditional the way a user would: `num_class_embeds = K + 1`, the extra id K the null class,
labels dropped to it with probability 0.1 (Ho & Salimans 2022, Algorithm 1). From the script, unchanged:
pixels to [-1, 1]; DDPMScheduler(num_train_timesteps=1000) with its default linear betas; t ~ U{0..999};
epsilon-prediction MSE on `add_noise`; AdamW(betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8);
`get_cosine_schedule_with_warmup`; gradient norm clipped to 1.0; shuffled epochs of the train split; EMA as
its --use_ema (EMAModel with warm-up, inv_gamma 1, power 3/4, max decay 0.9999), and samples from the EMA
weights. Changed, and why: the learning rate is 1e-3 (the script's 1e-4 is slow for runs of minutes), the
batch is 128 (diffkit's image preset, not the script's 16), the warm-up is min(500, 10% of the steps), and
training stops at a wall-time budget: the cosine runs over the steps a short timing (on a throw-away copy,
not counted) predicts for the budget, and training stops at the budget or at those steps, whichever is first.

Sampling: DPMSolverMultistepScheduler (DPM-Solver++ 2M, diffusers' defaults: no thresholding, no x0
clipping) at 20 steps, classifier-free guidance eps_u + w (eps_c - eps_u) from one batched forward, network
calls in chunks of 256 like diffkit's U-Net sampling path, x_T drawn as diffkit's `sample_run` draws it.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from diffkit.machine import intra_op_threads

T = 1000
LR, BATCH_SIZE, P_UNCOND, WARMUP, GRAD_CLIP = 1e-3, 128, 0.1, 500, 1.0
ADAM = {"betas": (0.95, 0.999), "weight_decay": 1e-6, "eps": 1e-8}  # the script's --adam_* defaults
EMA = {"decay": 0.9999, "use_ema_warmup": True, "inv_gamma": 1.0, "power": 3 / 4}  # its --ema_* defaults
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)  # snapshots at these fractions of the budget
SAMPLING_CHUNK = 256


def build_peer(shape, num_classes: int, seed: int = 0):
    """A UNet2DModel the size of diffkit's preset for this shape: two levels (32, 64) up to 16 px, else three
    (32, 64, 64) with attention at the lowest; one resnet per level down (two up), attention in the mid block."""
    from diffusers import UNet2DModel

    C, H, W = shape
    if min(H, W) <= 16:
        widths, down, up = (32, 64), ("DownBlock2D", "DownBlock2D"), ("UpBlock2D", "UpBlock2D")
    else:
        widths = (32, 64, 64)
        down, up = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=H, in_channels=C, out_channels=C, block_out_channels=widths,
                           layers_per_block=1, down_block_types=down, up_block_types=up, attention_head_dim=32,
                           num_class_embeds=num_classes + 1, class_embed_type=None)


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


class Batches:
    """Shuffled epochs of (x0 in [-1, 1], labels), like the script's DataLoader(shuffle=True), full batches."""

    def __init__(self, data, batch_size: int, generator: torch.Generator):
        self.x = torch.from_numpy(np.asarray(data.train, np.float32)) * 2 - 1  # [N, C, H, W]
        self.y = torch.from_numpy(np.asarray(data.train_labels, np.int64))
        self.batch_size, self.g, self.order, self.at = min(batch_size, len(self.x)), generator, None, 0

    def draw(self):
        if self.order is None or self.at + self.batch_size > len(self.order):
            self.order, self.at = torch.randperm(len(self.x), generator=self.g), 0
        idx = self.order[self.at:self.at + self.batch_size]
        self.at += self.batch_size
        return self.x[idx], self.y[idx]


def recipe_parts(data, *, seed: int = 0, batch_size: int = BATCH_SIZE, lr: float = LR, total_steps: int = 10_000,
                 use_ema: bool = True, bf16: bool = False, channels_last: bool = False, compiled: bool = False):
    """(model, ema or None, step) where step() runs one optimizer step of the recipe and returns its loss.
    bf16 / channels_last / compiled are speed levers for the --levers table (the benchmark's peer uses none)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    model = build_peer(data.shape, data.num_classes, seed).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    noise_scheduler = DDPMScheduler(num_train_timesteps=T)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, **ADAM)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, min(WARMUP, total_steps // 10), total_steps)
    ema = EMAModel(model.parameters(), **EMA) if use_ema else None
    g = torch.Generator().manual_seed(seed)
    batches, null = Batches(data, batch_size, g), data.num_classes
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def step() -> torch.Tensor:
        x0, labels = batches.draw()
        eps = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, T, (len(x0),), generator=g)
        labels = torch.where(torch.rand(len(x0), generator=g) < P_UNCOND, null, labels)  # label dropout
        x_t = noise_scheduler.add_noise(x0, eps, t).contiguous(memory_format=fmt)
        with torch.autocast("cpu", torch.bfloat16) if bf16 else nullcontext():
            eps_hat = forward(x_t, t, class_labels=labels).sample
        loss = F.mse_loss(eps_hat.float(), eps)  # epsilon prediction, as the script
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(model.parameters())
        return loss.detach()

    return model, ema, step


def seconds_per_step(data, batch_size: int, seed: int, repeats: int = 10) -> float:
    """Median time of a recipe step, measured on a throw-away model (2 warm-up steps first)."""
    _, _, step = recipe_parts(data, seed=seed, batch_size=batch_size)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _weights(model, ema) -> dict[str, torch.Tensor]:
    """The weights a sampler uses (the EMA's where there is one), as a detached state dict copy."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if ema is not None:
        names = [n for n, _ in model.named_parameters()]
        state.update({n: p.detach().clone() for n, p in zip(names, ema.shadow_params)})
    return state


def train_peer(data, seconds: float, *, seed: int = 0, threads: int | None = None, batch_size: int = BATCH_SIZE,
               lr: float = LR, use_ema: bool = True, checkpoints=CHECKPOINTS):
    """Train the peer on data's train split for `seconds` of wall time (or the cosine's steps, if fewer).

    Returns (model with its sampling weights loaded, stats): stats holds steps, seconds (training only, the
    snapshots and the timing copy excluded), images_per_second, params, planned_steps, loss (mean of the last
    50 steps), stopped ("budget" or "steps"), and snapshots: [{"seconds", "step", "state"}] at the first step
    past each checkpoint fraction of max(elapsed / seconds, step / planned_steps); the last one is the returned
    model's weights.
    """
    with intra_op_threads(threads):
        planned = max(10, int(seconds / seconds_per_step(data, batch_size, seed)))
        model, ema, step = recipe_parts(data, seed=seed, batch_size=batch_size, lr=lr, total_steps=planned,
                                        use_ema=use_ema)
        snapshots, elapsed, steps, losses = train_to_budget(step, lambda: _weights(model, ema), seconds, checkpoints,
                                                            planned)
    model.load_state_dict(snapshots[-1]["state"])
    stats = {"steps": steps, "seconds": elapsed, "images_per_second": steps * batch_size / elapsed,
             "params": param_count(model), "planned_steps": planned, "ema": use_ema,
             "loss": float(torch.stack(losses[-50:]).mean()),
             "stopped": "budget" if elapsed >= seconds else "steps", "snapshots": snapshots}
    return model.eval(), stats


def train_to_budget(step, weights, seconds: float, checkpoints, planned: int | None = None):
    """Call step() (-> its loss) until `seconds` of wall time (or `planned` steps) have passed, timing only the
    steps; at the first step past each checkpoint fraction of the run, a snapshot {"seconds", "step", "state":
    weights()}. Returns (snapshots, elapsed, steps, losses)."""
    snapshots, elapsed, steps, marks, losses = [], 0.0, 0, list(checkpoints), []
    while marks:
        t0 = time.perf_counter()
        losses.append(step())
        elapsed += time.perf_counter() - t0
        steps += 1
        progress = max(elapsed / seconds, steps / planned if planned else 0.0)
        if progress >= marks[0]:
            while marks and progress >= marks[0]:
                marks.pop(0)
            snapshots.append({"seconds": elapsed, "step": steps, "state": weights()})
    return snapshots, elapsed, steps, losses


def with_weights(model, state):
    """A copy of model holding the given weights (a snapshot), in eval mode."""
    other = copy.deepcopy(model)
    other.load_state_dict(state)
    return other.eval()


@torch.no_grad()
def sample_peer(model, labels, w: float, *, steps: int = 20, seed: int = 0) -> np.ndarray:
    """Samples for class ids `labels` [n] at guidance scale w, float32 [n, C, H, W] in [0, 1]."""
    from diffusers import DPMSolverMultistepScheduler

    model.eval()
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=T)  # DPM-Solver++ 2M, linear betas as training
    scheduler.set_timesteps(steps)
    cfg = model.config
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    x = torch.randn((len(y), cfg.in_channels, cfg.sample_size, cfg.sample_size),
                    generator=torch.Generator().manual_seed(seed))  # x_T as diffkit's sample_run draws it
    null = torch.full_like(y, cfg.num_class_embeds - 1)
    for t in scheduler.timesteps:
        eps_hat = torch.cat([_guided_eps(model, x[i:i + SAMPLING_CHUNK], t, y[i:i + SAMPLING_CHUNK],
                                         null[i:i + SAMPLING_CHUNK], w) for i in range(0, len(x), SAMPLING_CHUNK)])
        x = scheduler.step(eps_hat, t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).numpy().astype(np.float32)


def _guided_eps(model, x, t, y, null, w: float) -> torch.Tensor:
    """eps_u + w (eps_c - eps_u) (Ho & Salimans 2022, eq. 6); one forward at w in {0, 1}, else one of 2B."""
    tt = t.expand(len(x))
    if w in (0.0, 1.0):
        return model(x, tt, class_labels=null if w == 0.0 else y).sample
    eps_c, eps_u = model(torch.cat([x, x]), torch.cat([tt, tt]), class_labels=torch.cat([y, null])).sample.chunk(2)
    return eps_u + w * (eps_c - eps_u)
