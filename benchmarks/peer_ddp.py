"""The second peer of benchmarks/images.py: `denoising-diffusion-pytorch` (PyPI), the most used from-scratch
package, in its classifier-free-guidance variant (`denoising_diffusion_pytorch/classifier_free_guidance.py`:
`Unet(num_classes=..., cond_drop_prob=...)` and its `GaussianDiffusion`).

Overrides that make it run here, and why (everything else is the package's default):
- the module is loaded from its file: the package's `__init__` imports torchvision, which does not import beside
  this torch (`make bench-peers` installs the package with `--no-deps`; the module itself needs only torch,
  einops and tqdm);
- its `Trainer` needs torchvision and accelerate, so its loop is written out here with the Trainer's defaults:
  Adam(betas=(0.9, 0.99)), gradient norm clipped to 1.0, ema_pytorch's EMA (beta 0.995, every 10 steps) whose
  weights sample; changed as for the diffusers peer (benchmarks/peer_unet.py): the learning rate 1e-3 (the
  Trainer's 1e-4 is slow for runs of minutes) and the batch 128 (the Trainer's 16), shuffled epochs of the train
  split, stopped at the same wall-time budget;
- `Unet(dim=32, dim_mults=(1, 2))` up to 16 px, else `(1, 2, 2)` (its default (1, 2, 4, 8) halves 8x8 and 28x28
  images below a pixel; the widths are diffkit's preset's); `cond_drop_prob` its default 0.5;
- sampling: `sampling_timesteps=20` (its default samples all 1,000 steps) with `ddim_sampling_eta=0` (its default
  1.0 is ancestral, worse at 20 steps); plain classifier-free guidance, eps_u + w (eps_c - eps_u) with its
  cond_scale as w, the formula diffkit and the diffusers peer use: `rescaled_phi=0` and
  `remove_parallel_component=False` (its defaults rescale the guided output and drop the update's component
  along the conditional output); at cond_scale 1 its sampler unpacks two outputs where `forward_with_cond_scale`
  returns one (2.3.4 fails there), so the conditional output is passed twice; chunks of 256, torch's global seed
  set as the x_T seed.
Its objective (epsilon) and schedule (cosine, 1,000 steps) are its defaults.
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import torch
from peer_unet import Batches, train_to_budget, with_weights  # noqa: F401  (with_weights: this peer's, the same)

from diffkit.machine import intra_op_threads

LR, BATCH_SIZE, GRAD_CLIP = 1e-3, 128, 1.0
ADAM_BETAS = (0.9, 0.99)  # the Trainer's adam_betas
EMA_BETA, EMA_EVERY = 0.995, 10  # the Trainer's ema_decay, ema_update_every
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)
SAMPLING_CHUNK = 256
NAME = "denoising-diffusion-pytorch (CFG)"


def _module():
    """classifier_free_guidance.py, loaded from the installed package without its __init__ (torchvision)."""
    spec = importlib.util.find_spec("denoising_diffusion_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("denoising-diffusion-pytorch is not installed: make bench-peers")
    path = f"{next(iter(spec.submodule_search_locations))}/classifier_free_guidance.py"
    module_spec = importlib.util.spec_from_file_location("ddp_cfg", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.tqdm = lambda it, **_: it  # no progress bar per sampling loop
    return module


def build_peer(shape, num_classes: int, seed: int = 0):
    """Its GaussianDiffusion around its class-conditional Unet, the widths of diffkit's preset."""
    m = _module()
    C, H, W = shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = m.Unet(dim=32, num_classes=num_classes, dim_mults=(1, 2) if min(H, W) <= 16 else (1, 2, 2), channels=C)
        return m.GaussianDiffusion(unet, image_size=H, timesteps=1000, sampling_timesteps=20, ddim_sampling_eta=0.0)


def param_count(model) -> int:
    return sum(p.numel() for p in model.model.parameters())


def recipe_parts(data, *, seed: int = 0, batch_size: int = BATCH_SIZE, lr: float = LR):
    """(model, ema, step): step() runs one optimizer step of the Trainer's loop and returns its loss."""
    from ema_pytorch import EMA

    model = build_peer(data.shape, data.num_classes, seed).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS)
    ema = EMA(model, beta=EMA_BETA, update_every=EMA_EVERY)
    g = torch.Generator().manual_seed(seed)
    batches = Batches(data, batch_size, g)
    torch.manual_seed(seed)  # its loss draws t, noise and the condition drop from torch's global generator

    def step() -> torch.Tensor:
        x, labels = batches.draw()
        loss = model((x + 1) / 2, classes=labels)  # it takes images in [0, 1] and normalizes them itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update()
        return loss.detach()

    return model, ema, step


def train_peer(data, seconds: float, *, seed: int = 0, threads: int | None = None, batch_size: int = BATCH_SIZE,
               checkpoints=CHECKPOINTS):
    """Train for `seconds` of wall time; returns (the EMA model, stats) with the stats of peer_unet.train_peer
    (snapshots [{"seconds", "step", "state"}] of the EMA weights at each checkpoint fraction of the budget)."""
    with intra_op_threads(threads):
        model, ema, step = recipe_parts(data, seed=seed, batch_size=batch_size)
        snapshots, elapsed, steps, losses = train_to_budget(
            step, lambda: {k: v.detach().clone() for k, v in ema.ema_model.state_dict().items()}, seconds, checkpoints)
    sampler = copy.deepcopy(ema.ema_model).eval()
    stats = {"steps": steps, "seconds": elapsed, "images_per_second": steps * batch_size / elapsed,
             "params": param_count(model), "planned_steps": steps, "ema": True,
             "loss": float(torch.stack(losses[-50:]).mean()), "stopped": "budget", "snapshots": snapshots}
    return sampler, stats


def _plain_guidance(unet) -> None:
    """unet.forward_with_cond_scale as plain classifier-free guidance, (guided, null) at every scale."""
    if getattr(unet, "_plain", False):
        return
    forward = unet.forward_with_cond_scale

    def plain(*args, cond_scale=1.0, rescaled_phi=0.0, **kwargs):
        out = forward(*args, cond_scale=cond_scale, rescaled_phi=rescaled_phi, remove_parallel_component=False,
                      **kwargs)
        return (out, out) if cond_scale == 1 else out

    unet.forward_with_cond_scale, unet._plain = plain, True


@torch.no_grad()
def sample_peer(model, labels, w: float, *, steps: int = 20, seed: int = 0) -> np.ndarray:
    """Samples for class ids `labels` [n] at guidance scale w (its cond_scale), float32 [n, C, H, W] in [0, 1]."""
    model.eval()
    _plain_guidance(model.model)
    model.sampling_timesteps = steps
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    torch.manual_seed(seed)
    out = [model.sample(y[i:i + SAMPLING_CHUNK], cond_scale=w, rescaled_phi=0.0)
           for i in range(0, len(y), SAMPLING_CHUNK)]
    return torch.cat(out).clamp(0, 1).numpy().astype(np.float32)
