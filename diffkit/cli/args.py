"""The command line's flags: the parser of every subcommand (value types and shared flag groups: flags.py)."""

from __future__ import annotations

import argparse

from ..errors import DiffkitError
from .flags import (
    band_arg,
    device_arg,
    finite_float,
    int_tuple,
    interval_arg,
    non_negative_int,
    port_arg,
    positive_int,
    sampler_args,
    seed_arg,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence instead of argparse's usage dump
        raise DiffkitError(f"{message} (see `{self.prog} --help`)")


def _how_it_trains_args(parser) -> None:
    """--precision and --threads, shared by every command that trains."""
    from ..devices import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS,
                        help="autocast of the network: auto (the default: bf16 where the device runs it natively and, "
                             "on a CPU, a short probe of this run's step finds it faster; else fp32; decided at every "
                             "start, resume included), fp32, bf16 or fp16 (with a gradient scaler)")
    parser.add_argument("--threads", type=non_negative_int("--threads"),
                        help="intra-op CPU threads per process (0, the default: one or all of this process's cores, "
                             "whichever runs this run's step faster, decided at every start; several processes "
                             "share the cores)")


def build_parser() -> argparse.ArgumentParser:
    from ..version import __version__
    from .edit import edit_parsers, negative_args
    from .interop import import_parser

    p = _Parser(prog="diffkit", description="Diffusion models from first principles: train, sample, evaluate, show.")
    p.add_argument("--version", action="version", version=f"diffkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = _train_parser(sub)
    _network_args(t)
    _train_run_args(t)
    _vae_parser(sub)
    _reflow_parser(sub)
    _distill_parser(sub)
    _finetune_parser(sub)
    s = _sample_parser(sub)
    sampler_args(s)
    _sample_cond_args(s)
    negative_args(s)
    _eval_parser(sub)
    _demo_parser(sub)
    _lab_parser(sub)
    import_parser(sub)
    edit_parsers(sub)
    return p


def _train_parser(sub) -> argparse.ArgumentParser:
    """`diffkit train`: the data, schedule and prediction; every flag here is in runs.recipes.TRAIN_FLAGS."""
    from ..data.images import IMAGE_DATASETS
    from ..data.points import DATASETS
    from ..prediction import PREDICTIONS
    from ..schedule import SCHEDULE_NAMES

    t = sub.add_parser("train", help="train a model on 2-D points or images into a run directory")
    t.add_argument("--data", help=f"points: {', '.join(DATASETS)} or a .npy/.npz/.csv [N, 2] file; images: "
                                  f"{', '.join(IMAGE_DATASETS)}, a folder of PNG/JPEG or an .npz of images")
    t.add_argument("--out", required=True, help="run directory to create")
    t.add_argument("--steps", type=positive_int("--steps"),
                   help="optimizer steps (default 1200 for spiral, circle, moons and gaussians8, 3000 for other "
                        "points, per image preset)")
    t.add_argument("--batch-size", type=positive_int("--batch-size"), help="points per step (default 1024)")
    t.add_argument("--schedule", help=f"noise schedule: {', '.join(SCHEDULE_NAMES)} (default linear for points, cosine for images)")
    t.add_argument("--timesteps", type=positive_int("--timesteps"), help="T, the number of diffusion steps (default 1000)")
    t.add_argument("--prediction", help=f"what the network predicts: {', '.join(PREDICTIONS)} (default: v for ddpm, "
                                        "flow for flow, edm for edm)")
    t.add_argument("--objective", help="ddpm (a discrete VP schedule), flow (flow matching) or edm (Karras et al. "
                                       "2022); default: the data set's (flow on mnist5k and shapes, else ddpm; "
                                       "ddpm wherever --schedule, --timesteps or --zero-terminal-snr is given)")
    t.add_argument("--time-dist", help="flow: uniform or logit-normal (default, SD3); edm: lognormal (default)")
    t.add_argument("--time-loc", type=finite_float("--time-loc"),
                   help="time normal's mean (default: flow 0, shapes 0.25; edm -1.2)")
    t.add_argument("--time-scale", type=finite_float("--time-scale"), help="its std (default: flow 1, edm 1.2)")
    t.add_argument("--shift", type=finite_float("--shift"),
                   help="flow: SD3's time shift s, tau -> s tau / (1 + (s - 1) tau), in training and the sampling "
                        "grid (default 1: none)")
    t.add_argument("--foreground-weight", type=finite_float("--foreground-weight", 0.0),
                   help="flow on pixels: extra loss weight on the pixels off the black background, at the flow "
                        "times of --foreground-band (1 + W there, per image normalized; default 0: none)")
    t.add_argument("--foreground-band", type=band_arg, metavar="LO,HI",
                   help="the flow times tau where --foreground-weight applies (default 0.4,0.8)")
    t.add_argument("--zero-terminal-snr", action="store_true",
                   help="rescale the schedule so alpha_bar at T-1 is 0 (needs v or x0 prediction)")
    t.add_argument("--cond", action="store_true",
                   help="class-conditional model on the data's labels (shapes3, an .npz with y, a CSV of x,y,label)")
    t.add_argument("--p-uncond", type=finite_float("--p-uncond", 0.0),
                   help="with --cond: share of labels dropped to the null class, for guidance (default 0.1)")
    t.add_argument("--flip", action="store_true", help="images: random horizontal flips (not for digits or text)")
    t.add_argument("--latent", metavar="VAE_RUN|auto",
                   help="images: a VAE run (diffkit train-vae) to diffuse in the latent space of: the data is "
                        "encoded once (cached), samples are decoded. auto: the data's default VAE, trained on first "
                        "use into OUT-vae beside the run (reused by later runs there)")
    t.add_argument("--pixel", action="store_true",
                   help="images: diffuse the pixels where the data's default run is latent (--text on shapes: "
                        "--latent auto, a 64-wide latent U-Net)")
    t.add_argument("--text", nargs="?", const="minilm", metavar="ENCODER",
                   help="images: text-to-image on the data's captions (shapes, shapes64, mnist5k, digits, or a folder "
                        "with captions.csv / a .txt per image), through a frozen text encoder: minilm (the default, "
                        "all-MiniLM-L6-v2, bundled) or a local transformers model folder")
    return t


def _network_args(t) -> None:
    """`diffkit train`: the image network's shape (DiT or U-Net)."""
    t.add_argument("--net", choices=["unet", "dit"], help="images: the network, a U-Net (default) or a DiT "
                                                            "(a transformer on patches, Peebles & Xie 2023)")
    t.add_argument("--dit-size", choices=["tiny", "small", "base"], help="--net dit: width / depth / heads preset, "
                                                                        "64/4/4, 128/6/4 (default) or 192/8/6")
    t.add_argument("--patch-size", type=positive_int("--patch-size"),
                   help="--net dit: p x p pixels per token, dividing the image sides (default 2 up to 16 px, else 4)")
    t.add_argument("--channels", type=positive_int("--channels"), help="images: U-Net width of the first level")
    t.add_argument("--channel-mult", type=int_tuple("--channel-mult"),
                   help="images: width multiplier per U-Net level, e.g. 1,2,2 (the resolution halves per level)")
    t.add_argument("--res-blocks", type=positive_int("--res-blocks"), help="images: residual blocks per level")
    t.add_argument("--cross-attention", type=int_tuple("--cross-attention", allow_empty=True),
                   help="--text: U-Net levels (0 = full resolution) with cross-attention to the prompt's tokens, e.g. "
                        "1,2 (default: every level; the mid block always has it)")
    t.add_argument("--attention", type=int_tuple("--attention", allow_empty=True),
                   help="images: U-Net levels with self-attention, e.g. 2 or 1,2 ('' for none; the middle always has it)")
    t.add_argument("--attention-keys", type=non_negative_int("--attention-keys"),
                   help="images: self-attention's keys and values average-pooled (2x2, 4x4, ...) to at most this "
                        "many positions, each query still seeing the whole map (0: every position; default 64 where the "
                        "U-Net preset has four levels: 32 px and up, sides divisible by 8; measured on shapes)")
    t.add_argument("--dropout", type=finite_float("--dropout", 0.0), help="images: U-Net dropout rate")


def _train_run_args(t) -> None:
    """`diffkit train`: optimizer, checkpoints, and how (and where) it runs."""
    t.add_argument("--lr", type=finite_float("--lr", 0.0))
    t.add_argument("--seed", type=int)
    t.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every"),
                   help="steps between checkpoints (default 1000 for points, 500 for images; the first comes at a "
                        "tenth of it, and Ctrl-C or SIGTERM writes one before stopping)")
    t.add_argument("--keep-checkpoints", type=positive_int("--keep-checkpoints"),
                   help="resumable checkpoints kept in RUN/train_state (default 2)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    device_arg(t)
    _how_it_trains_args(t)
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the network for training (default: on a CPU with AMX-BF16, 500 steps or "
                        "more, a pixel U-Net in bf16 or a text-to-image U-Net on latents: 1.15-1.42x a step there; "
                        "the first compile of a shape 17-101 s, later runs 2-4 s)")
    t.add_argument("--nproc", type=positive_int("--nproc"),
                   help="train in N processes on this machine with DistributedDataParallel (torch's launcher; "
                        "for several machines run torchrun ... -m diffkit train)")
    t.add_argument("--batch-per-device", type=positive_int("--batch-per-device"),
                   help="largest micro-batch per forward pass; a process's share of --batch-size above it is "
                        "accumulated (same result, less memory)")


def _vae_parser(sub) -> None:
    from ..data.images import IMAGE_DATASETS

    v = sub.add_parser("train-vae", help="train an autoencoder (KL VAE) on images, for latent diffusion")
    v.add_argument("--data", help=f"images: {', '.join(IMAGE_DATASETS)}, a folder of PNG/JPEG or an .npz of images")
    v.add_argument("--out", required=True, help="VAE run directory to create")
    v.add_argument("--factor", type=positive_int("--factor"), help="downsampling factor f: 2, 4 (default) or 8; "
                                                                  "latents are (H / f) x (W / f)")
    v.add_argument("--latent-channels", type=positive_int("--latent-channels"), help="channels of a latent (default 4)")
    v.add_argument("--kl-weight", type=finite_float("--kl-weight", 0.0),
                   help="beta, the weight of the KL term against the per-pixel MSE (default 1e-4)")
    v.add_argument("--steps", type=positive_int("--steps"), help="optimizer steps (default 600)")
    v.add_argument("--batch-size", type=positive_int("--batch-size"), help="images per step (default 64)")
    v.add_argument("--lr", type=finite_float("--lr", 0.0))
    v.add_argument("--seed", type=int)
    v.add_argument("--resume", action="store_true", help="continue the VAE run in --out from its latest checkpoint")
    v.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    v.add_argument("--json", action="store_true", help="print the reconstruction report as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    device_arg(v)
    _how_it_trains_args(v)


def _reflow_parser(sub) -> None:
    r = sub.add_parser("reflow", help="straighten a run's ODE: a flow trained on its (noise, sample) pairs")
    r.add_argument("--teacher", help="the run whose ODE gives the pairs (ddpm, edm or flow)")
    r.add_argument("--out", required=True, help="the student's run directory")
    r.add_argument("--pairs", type=positive_int("--pairs"), help="(noise, sample) pairs (default 10000)")
    r.add_argument("--sampler", help="the teacher's ODE solver: dpmpp-2m (default), dpmpp-3m, ddim, euler, heun")
    r.add_argument("--steps", type=positive_int("--steps"), help="the teacher's ODE steps (default 20)")
    r.add_argument("--guidance", type=finite_float("--guidance", 0.0),
                   help="class-conditional and text teachers: the guidance scale of the pairs (default 1)")
    r.add_argument("--train-steps", type=positive_int("--train-steps"),
                   help="the student's optimizer steps (default: the teacher's)")
    r.add_argument("--seed", type=int, help="seed of the pairs' noises and of training (default 0)")
    _derived_run_args(r, "student")


def _derived_run_args(p, what: str) -> None:
    """The flags every derived run's command shares (reflow, distill, finetune): resume, overwrite, how it runs."""
    p.add_argument("--resume", action="store_true", help=f"continue the {what} in --out from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    device_arg(p)
    _how_it_trains_args(p)


def _distill_parser(sub) -> None:
    d = sub.add_parser("distill", help="a student that samples in a few network calls what its teacher needs many for")
    d.add_argument("--teacher", help="the run to distill (any objective; class, text or unconditional)")
    d.add_argument("--out", required=True, help="the student's run directory")
    d.add_argument("--method", help="progressive (default; Salimans & Ho 2022: one student step learns two teacher "
                                    "steps, halving down to --steps) or consistency (Song et al. 2023: every point "
                                    "of the teacher's ODE maps to its end)")
    d.add_argument("--steps", type=positive_int("--steps"),
                   help="the student's sampling steps, `sample`'s default for it (progressive: a power of two, "
                        "default 4; consistency: default 2)")
    d.add_argument("--guidance", type=finite_float("--guidance", 0.0),
                   help="class-conditional and text teachers: the guidance scale folded into the student (default 1); "
                        "a guided student step costs one network call")
    d.add_argument("--guidance-range", metavar="LO,HI",
                   help="progressive, class and text teachers: a student that takes the guidance scale w as an input "
                        "(Meng et al. 2023) and samples at any w in [LO, HI] in one call per step (`sample "
                        "--guidance W`; default the midpoint); instead of --guidance")
    d.add_argument("--train-steps", type=positive_int("--train-steps"),
                   help="the student's optimizer steps (default: progressive, per halving round a seventh of an "
                        "image teacher's steps, a ninth of a points teacher's (a 1-step student of points: 11/15 "
                        "of them in all); consistency, 0.3 of an image teacher's, half a points teacher's)")
    d.add_argument("--levels", type=positive_int("--levels"),
                   help="consistency: the noise levels of the teacher's ODE steps (default 36 for points, 18 for "
                        "images, 12 for digits: measured, docs/distill.md)")
    d.add_argument("--lr", type=finite_float("--lr", 0.0),
                   help="the student's peak learning rate (default: a share of the teacher's, measured per method "
                        "and space, diffkit/runs/distill.py LR_SHARE; a digits consistency student 1.5x)")
    d.add_argument("--seed", type=int, help="seed of the student's training (default 0)")
    _derived_run_args(d, "student")


def _finetune_parser(sub) -> None:
    from ..nn.lora import DEFAULT_TARGETS, TARGETS

    f = sub.add_parser("finetune", help="adapt a run to new data with LoRA adapters (only they train and are stored)")
    f.add_argument("--run", help="the base run (its network, path and conditioning)")
    f.add_argument("--data", help="the new data: an image folder or .npz (or points) of the base's shape")
    f.add_argument("--out", required=True, help="the LoRA run's directory (it records the base by path and checksum)")
    f.add_argument("--lora-rank", dest="rank", type=positive_int("--lora-rank"), help="the adapters' rank (default 8)")
    f.add_argument("--lora-targets", dest="targets", choices=tuple(TARGETS),
                   help=f"the layers that take adapters (default {DEFAULT_TARGETS})")
    f.add_argument("--full", action="store_true", default=None, help="a full fine-tune instead: every weight trains "
                   "and the run stores the whole network")
    f.add_argument("--train-steps", type=positive_int("--train-steps"), help="optimizer steps (default 300)")
    f.add_argument("--lr", type=finite_float("--lr", 0.0), help="peak learning rate (default: 10x the base's for "
                   "adapters, the base's for --full)")
    f.add_argument("--seed", type=int, help="seed of the adapters' training (default 0)")
    _derived_run_args(f, "LoRA run")
    m = sub.add_parser("merge", help="write a LoRA run's adapters merged into its base as a full run")
    m.add_argument("--run", required=True, help="the LoRA run (made by `diffkit finetune`)")
    m.add_argument("--out", required=True, help="the new run directory")


def _sample_parser(sub) -> argparse.ArgumentParser:
    from ..sampling import SAMPLERS, SPACINGS
    from ..schedule import SCHEDULE_NAMES

    s = sub.add_parser("sample", help="draw samples from a trained run")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory written by `diffkit train`")
    src.add_argument("--oracle", help="sample the exact denoiser of a Gaussian mixture instead of a model: gaussians8 "
                                      "or a mixture .json (weights, means, covariances, optional labels)")
    s.add_argument("--schedule", help=f"--oracle: its noise schedule, {', '.join(SCHEDULE_NAMES)} (default linear)")
    s.add_argument("--timesteps", type=positive_int("--timesteps"), help="--oracle: T (default 1000)")
    s.add_argument("--objective", help="--oracle: its path: ddpm (default: the VP --schedule), flow or edm")
    s.add_argument("--shift", type=finite_float("--shift"), help="--oracle with --objective flow: SD3's time shift")
    s.add_argument("--n", type=positive_int("--n"), help="number of samples (default 1000, or --noise's rows)")
    s.add_argument("--noise", help="x_T from this float32 .npy [N, *shape] (the network's space: a latent run's "
                   "latents), as a diffusers pipeline's latents; the same start gives the same samples on any device")
    s.add_argument("--out", required=True, help="output .npy: float32 [N, 2] (images: [N, C, H, W] in [0, 1])")
    s.add_argument("--sampler", help=f"{', '.join(SAMPLERS)} (default: the run's own: dpmpp-2m 20 for image runs trained now (shapes: dpmpp-2m-sde 20, s_tmax 3), a student's its own, else ddim)")
    s.add_argument("--steps", type=int, help="grid steps, 1..T (default per sampler: ddpm T, ddim 50, dpmpp-2m 20, ...)")
    s.add_argument("--spacing", help=f"step grid: {', '.join(SPACINGS)}, logsnr:SIGMA_MIN or karras:SIGMA_MIN (down "
                   "to that noise level), or diffusers-leading|trailing|linspace (the timesteps diffusers' scheduler "
                   "for the sampler takes; default per sampler, an imported run's or a student's own)")
    return s


def _sample_cond_args(s) -> None:
    """`diffkit sample`: what to sample (class, prompts, guidance), the seed and the files it writes."""
    s.add_argument("--class", dest="cls", help="class id or name to sample (models trained with --cond)")
    s.add_argument("--prompt", action="append", help="text runs: a prompt to sample --n images of (repeat for several)")
    s.add_argument("--prompts", help="text runs: a file of prompts, one per line (--n images of each)")
    s.add_argument("--guidance", type=finite_float("--guidance", 0.0),
                   help="classifier-free guidance scale w with --class: 0 unconditional, 1 conditional (default), >1 stronger")
    s.add_argument("--guidance-interval", type=interval_arg, default=argparse.SUPPRESS, help="noise levels LO,HI "
                   "(sigma/alpha) where guidance applies, or 'all' (default: the run's, images 0.2,1)")
    clip = s.add_mutually_exclusive_group()
    clip.add_argument("--clip", action="store_true", help="clip x0_hat to the data's box (pixels: [0, 1]) at every step")
    clip.add_argument("--no-clip", action="store_true", help="do not clip x0_hat (the default for image presets)")
    s.add_argument("--seed", type=seed_arg, help="random seed (default: a fresh one, printed and written to the sidecar "
                   "FILE.json, so a sample can be repeated)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--plot", help="points: also draw the samples to this .png")
    s.add_argument("--grid", help="images: also draw the first 100 samples as a grid to this .png")
    s.add_argument("--gif", help="images: also animate the reverse process of the grid to this .gif")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="the network calls' "
                   "precision: auto (default: bf16 for a U-Net on a CPU with native bf16, else fp32), fp32 or bf16")
    device_arg(s)


def _eval_parser(sub) -> None:
    from ..data.images import IMAGE_DATASETS
    from ..data.points import DATASETS

    e = sub.add_parser("eval", help="score samples against fresh data")
    e.add_argument("--samples", help=".npy/.npz/.csv file of [N, 2] samples (images: .npy [N, C, H, W])")
    e.add_argument("--nll", action="store_true", help="instead of samples: the likelihood of held-out --data under "
                   "--run (probability-flow ODE and ELBO; nats per point, bits/dim for images)")
    e.add_argument("--straightness", action="store_true",
                   help="instead of samples: how straight --run's ODE trajectories from noise to data are, S of "
                        "Liu et al. 2023 (eq. 5; 0: straight lines, one Euler step is exact)")
    e.add_argument("--steps", type=positive_int("--steps"), help="--straightness: ODE steps (ddim; default 100)")
    e.add_argument("--run", help="--nll, --straightness: the run directory to measure")
    e.add_argument("--n", type=positive_int("--n"), help="--nll: held-out points or test images (default 2000 / 500)")
    e.add_argument("--tol", type=finite_float("--tol", 0.0), default=1e-5, help="--nll: ODE solver tolerance (default 1e-5)")
    e.add_argument("--probes", type=positive_int("--probes"), help="--nll: Hutchinson probes of the ODE's divergence")
    e.add_argument("--elbo-strata", type=positive_int("--elbo-strata"),
                   help="--nll: ELBO timesteps per point, one per stratum (default T - 1 for points, 100 for images)")
    e.add_argument("--data", help=f"dataset ({', '.join(DATASETS + IMAGE_DATASETS)}), a data file or an image folder")
    e.add_argument("--class", dest="cls", help="images: the class the samples were drawn for (reports class accuracy)")
    e.add_argument("--prompts", help="images: the prompts file the samples were drawn for (`diffkit sample --prompts`); "
                                     "reports how well they obey it (shapes: per attribute; digits, mnist5k: digit)")
    e.add_argument("--prompt", help="--straightness on a text run: the prompt its trajectories follow (default: none)")
    e.add_argument("--n-ref", type=positive_int("--n-ref"), default=4000, help="reference points (default 4000)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    device_arg(e)


def _demo_parser(sub) -> None:
    from ..data.images import IMAGE_DATASETS

    d = sub.add_parser("demo", help="train on the spiral (or an image set), sample, print a table and draw pictures")
    d.add_argument("--out", default="demo_out", help="output directory (its previous demo output is replaced)")
    d.add_argument("--data", default="spiral", help=f"spiral (default) or an image set: {', '.join(IMAGE_DATASETS)}")
    d.add_argument("--steps", type=positive_int("--steps"), help=argparse.SUPPRESS)
    d.add_argument("--n", type=positive_int("--n"), help=argparse.SUPPRESS)
    d.add_argument("--quiet", action="store_true", help="no progress bar")


def _lab_parser(sub) -> None:
    lb = sub.add_parser("lab", help="the interactive page: forward, schedules, reverse, guidance, train, samplers")
    lb.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    lb.add_argument("--port", type=port_arg, default=8765, help="port (default 8765)")
    lb.add_argument("--runs", default="runs", help="folder of run directories the lab lists and trains into (default runs)")
    lb.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="another name the page may be reached by (its Host header; loopback names and the bound "
                         "address are always allowed); repeatable")
    device_arg(lb)
