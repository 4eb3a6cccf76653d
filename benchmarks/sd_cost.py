"""What a Stable Diffusion 1.x image costs on this CPU: one network call of each of its three models at their real
shapes (random weights: the arithmetic does not depend on their values), timed and counted, then added up for a
512x512 image at K steps with classifier-free guidance (two U-Net calls per step, one batch of 2).

    .venv/bin/python benchmarks/sd_cost.py [--steps 20] [--repeats 2]

The configurations are Stable Diffusion 1.5's published ones (U-Net 860M parameters at 64x64 latents with
768-wide CLIP tokens, the AutoencoderKL decoder to 512x512, CLIP ViT-L/14's text tower over 77 tokens). What an
imported snapshot would run (`diffkit import --diffusers SD15 --out RUN; diffkit sample --run RUN --prompt ...
--sampler dpmpp-2m --steps 20 --guidance 7.5`) is these calls, as tests/test_interop_sd.py checks on a tiny pipeline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffkit import machine

sys.path.insert(0, str(Path(__file__).parent))
from roofline import count_flops, fastest

UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, "norm_num_groups": 32}
VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
       "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
       "up_block_types": ("UpDecoderBlock2D",) * 4, "sample_size": 512}
CLIP = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
        "num_hidden_layers": 12, "max_position_embeddings": 77}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    import diffusers
    import transformers

    print(machine.describe())
    torch.manual_seed(0)

    def row(name: str, params, call, calls: int) -> tuple:
        """One table row (each builder below returns its row and frees its model: one in memory at a time)."""
        return name, sum(p.numel() for p in params), count_flops(call), fastest(call, a.repeats)[0], calls

    def unet_row():
        unet = diffusers.UNet2DConditionModel(**UNET).eval()
        x, t, tokens = torch.randn(2, 4, 64, 64), torch.tensor([500.0, 500.0]), torch.randn(2, 77, 768)
        return row("U-Net call, batch 2 (prompt + null)", unet.parameters(),
                   lambda: unet(x, t, encoder_hidden_states=tokens).sample, a.steps)

    def vae_row():
        vae = diffusers.AutoencoderKL(**VAE).eval()
        z = torch.randn(1, 4, 64, 64)
        return row("VAE decoder, 64x64 -> 512x512", vae.decoder.parameters(), lambda: vae.decode(z).sample, 1)

    def text_row():
        text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**CLIP)).eval()
        ids = torch.randint(0, CLIP["vocab_size"], (2, 77))
        return row("text encoder, 2 x 77 tokens", text.parameters(),
                   lambda: text(input_ids=ids).last_hidden_state, 1)

    with torch.no_grad():
        rows = [unet_row(), vae_row(), text_row()]
    print("\n| model call | parameters | GFLOPs | seconds | GFLOP/s | calls per image | seconds per image |")
    print("|---|---|---|---|---|---|---|")
    total = flops = 0.0
    for name, params, f, s, calls in rows:
        total, flops = total + s * calls, flops + f * calls
        print(f"| {name} | {params / 1e6:.0f}M | {f / 1e9:.0f} | {s:.2f} | {f / s / 1e9:.0f} | {calls} | "
              f"{s * calls:.1f} |")
    print(f"\none 512x512 image at {a.steps} guided steps: {flops / 1e12:.1f} TFLOPs, {total:.0f} s "
          f"({total / 60:.1f} min) on this machine, fp32")


if __name__ == "__main__":
    main()
