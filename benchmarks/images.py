"""Image models at equal wall time: diffkit's default conditional U-Net run against diffusers' UNet2DModel
trained with the Hugging Face recipe (benchmarks/peer_unet.py) and against denoising-diffusion-pytorch's
classifier-free-guidance model (benchmarks/peer_ddp.py; `make bench-peers` installs it), on digits, mnist5k and
shapes.

    .venv/bin/python benchmarks/images.py [--data digits,mnist5k,shapes] [--seconds S] [--n 1000] [--no-peer]
                                          [--peers diffusers,ddp] [--threads 2] [--seed 0] [--target 0.95]
    .venv/bin/python benchmarks/images.py --levers [--data digits] [--lever-steps 10] [--no-compile]

Per data set, both models train for the same wall-time budget (default per data set below; diffkit stops
earlier at its preset's step count, when that comes first; the table says which stopped it). Then, with
dpmpp-2m (diffusers' DPMSolverMultistepScheduler for the peer) at 20 steps and the same seed, per w in
{0, 1, 3}: the classifier-feature FD to the test split (and its real-data floor), precision / recall,
class accuracy (the judge's, against the class asked for; '-' at w = 0, where the samples are unconditional
and the class mix gap to the data's is reported instead), colour purity (shapes). Sampling speed is timed at
w = 3. Both models are snapshotted at 25 / 50 / 75 / 100% of their run (EMA weights; snapshot time is not
training time); the headline is the time each needs to reach `--target` class accuracy at w = 3, linear
between snapshots (from chance at t = 0), and the ratio. --levers times the training step of both U-Nets
under CPU speed levers instead (fp32 / bf16 autocast, channels_last, threads, batch, torch.compile).
Sample grids go to benchmarks/out/ when diffkit.viz.images exists.
"""

from __future__ import annotations

import argparse
import resource
import signal
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import peer_ddp
import peer_unet as peer
import torch

from diffkit import machine
from diffkit.cond import ClassConditioning, drop_conds
from diffkit.data.images import load_images
from diffkit.machine import intra_op_threads
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.metrics.shapes import colour_purity
from diffkit.nn.registry import build_network
from diffkit.runs import RUN_DEFAULT, default_config, load_run, make_trainer, sample_run
from diffkit.store.rundir import save_config, save_model
from diffkit.store.trainlog import LOG, read_log
from diffkit.training.autotune import auto_compile
from diffkit.training.distributed import Runtime
from diffkit.training.ema import EMA
from diffkit.training.loss import simple_loss

DEFAULT_SECONDS = {"digits": 150, "mnist5k": 1200, "shapes": 600}
SCALES, GUIDED = (0.0, 1.0, 3.0), 3.0
SAMPLER, STEPS = "dpmpp-2m", 20
OUT = Path(__file__).parent / "out"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train_diffkit(spec: str, seconds: float, threads: int, root: Path, checkpoints=peer.CHECKPOINTS):
    """diffkit's default conditional run, stopped by the callback at `seconds` of training (or at its own
    steps); EMA snapshots (run dirs) at the checkpoint fractions of max(elapsed / seconds, step / steps)."""
    cfg = default_config(spec, cond=True)
    cfg.train.threads = threads
    marks, snapshots, clock = list(checkpoints), [], {"start": 0.0, "paused": 0.0}

    def callback(s) -> bool:
        elapsed = time.perf_counter() - clock["start"] - clock["paused"]
        progress = max(elapsed / seconds, s.step / cfg.train.steps)
        if progress < marks[0]:
            return False
        t0 = time.perf_counter()
        while marks and progress >= marks[0]:
            marks.pop(0)
        snap = root / f"snapshot-{len(snapshots)}"
        save_config(snap, trainer.config)
        save_model(snap, trainer.ema.state_dict(trainer.network), s.step)
        snapshots.append({"seconds": elapsed, "step": s.step, "run": snap})
        clock["paused"] += time.perf_counter() - t0
        return progress >= 1

    # compiled where `diffkit train` compiles by default on this machine (the compile counts in the training time)
    compiled = bool(auto_compile(cfg, cfg.train.steps, cfg.train.precision, torch.device("cpu")))
    trainer = make_trainer(cfg, root / "run", progress=False, callback=callback, runtime=Runtime(compile=compiled))
    clock["start"] = time.perf_counter()
    out = trainer.train()
    secs = out["seconds"] - clock["paused"]
    for s in snapshots:
        s["run"] = load_run(s["run"])
    stats = {"steps": out["steps"], "seconds": secs, "images_per_second": out["steps"] * cfg.train.batch_size / secs,
             "params": sum(p.numel() for p in trainer.network.parameters()), "snapshots": snapshots,
             "stopped": "steps" if trainer.step >= cfg.train.steps else "budget", "compiled": compiled,
             "loss": read_log(root / "run" / LOG)["loss"][-1]}
    return stats


def diffkit_sampler(run, seed: int, interval=RUN_DEFAULT):
    """interval RUN_DEFAULT: the run's guidance interval (image presets: (0.2, 1]); None: guidance at every level."""
    return lambda labels, w: sample_run(run, len(labels), SAMPLER, STEPS, seed=seed, cond=labels, guidance=w,
                                        guidance_interval=interval)


# the peers: key -> (module, its row's name); each module has train_peer, with_weights and sample_peer
PEERS = {"diffusers": (peer, "diffusers UNet2DModel (HF recipe)"), "ddp": (peer_ddp, peer_ddp.NAME)}


def peer_sampler(model, seed: int, module=peer):
    return lambda labels, w: module.sample_peer(model, labels, w, steps=STEPS, seed=seed)


def evaluate(sample, data, judge, labels, seed: int) -> dict:
    """Metrics per w of one model's sampler(labels, w) -> images; the w = 3 samples kept for the grid."""
    row = {}
    for w in SCALES:
        t0 = time.perf_counter()
        x = sample(labels, w)
        if w == GUIDED:
            row["sample_ips"], row["grid"] = len(x) / (time.perf_counter() - t0), x
        m = evaluate_images(x, data, judge, labels=labels if w > 0 else None, seed=seed)
        if w == 0:
            mix = np.bincount(judge.predict(x), minlength=data.num_classes) / len(x)
            want = np.bincount(data.test_labels, minlength=data.num_classes) / len(data.test_labels)
            m["mix_gap_pp"] = float(np.abs(mix - want).max() * 100)
        if data.spec == "shapes":
            m["purity"] = colour_purity(x)
        row[w] = m
    return row


def time_to(points, target: float, chance: float) -> float | None:
    """First time the (seconds, accuracy) curve, linear between points from (0, chance), reaches target."""
    prev = (0.0, chance)
    for t, acc in points:
        if acc >= target:
            t0, a0 = prev
            return t0 + (t - t0) * (target - a0) / (acc - a0) if acc > a0 else t
        prev = (t, acc)
    return None


def score(key: str, name: str, stats: dict, sampler_at, data, judge, labels, a) -> dict:
    """A table row: metrics of the last snapshot, and the (seconds, w = 3 accuracy) curve over all of them
    (the last point reuses the row's accuracy). sampler_at(snapshot) -> sampler(labels, w)."""
    snaps = stats["snapshots"]
    row = {"key": key, "data": data.spec, "model": name, **stats,
           **evaluate(sampler_at(snaps[-1]), data, judge, labels, a.seed)}
    row["curve"] = [(s["seconds"], float((judge.predict(sampler_at(s)(labels, GUIDED)) == labels).mean()))
                    for s in snaps[:-1]] + [(snaps[-1]["seconds"], row[GUIDED]["class_accuracy"])]
    row["t_target"] = time_to(row["curve"], a.target, 1 / data.num_classes)
    row["purity_data"] = colour_purity(data.test) if data.spec == "shapes" else None
    save_grid(row["grid"], data.num_classes, OUT / f"{data.spec}-{key}-w3.png")
    return row


def run_data(spec: str, a, root: Path) -> list[dict]:
    data = load_images(spec)
    judge = load_or_train_judge(data, progress=False)
    labels = np.arange(a.n) % data.num_classes
    seconds = a.seconds or DEFAULT_SECONDS.get(spec, 300)
    print(f"# {spec}: {len(data.train)} train / {len(data.test)} test images {list(data.shape)}, {data.num_classes} "
          f"classes; judge test accuracy {judge.test_accuracy:.3f}; budget {seconds:g} s")
    st = train_diffkit(spec, seconds, a.threads, root / spec)
    print(f"#   diffkit trained: {st['steps']} steps in {st['seconds']:.1f} s (stopped by {st['stopped']}); "
          f"last logged loss {st['loss']:.4f}; process peak RSS so far {peak_rss_mib():.0f} MiB")
    rows = [score("diffkit", "diffkit", st, lambda s: diffkit_sampler(s["run"], a.seed), data, judge, labels, a)]
    final = st["snapshots"][-1]["run"]
    everywhere = evaluate_images(diffkit_sampler(final, a.seed, None)(labels, GUIDED), data, judge, labels=labels, seed=a.seed)
    print(f"#   diffkit at w = {GUIDED:g} on every noise level (no guidance interval, as the peer samples): FD "
          f"{everywhere['fd']:.2f} (floor {everywhere['fd_floor']:.2f}), P/R {everywhere['precision']:.2f}/"
          f"{everywhere['recall']:.2f}, class accuracy {everywhere['class_accuracy']:.3f}; interval {final.config.sampling.guidance_interval}")
    for key in [] if a.no_peer else a.peers:
        module, name = PEERS[key]
        model, ps = module.train_peer(data, seconds, seed=a.seed, threads=a.threads)
        print(f"#   {name} trained: {ps['steps']} steps in {ps['seconds']:.1f} s (stopped by {ps['stopped']}; "
              f"planned {ps['planned_steps']} steps; EMA {'on' if ps['ema'] else 'off'}); loss of the last 50 steps "
              f"{ps['loss']:.4f}; process peak RSS so far {peak_rss_mib():.0f} MiB")

        def at(snapshot, module=module, model=model):
            return peer_sampler(module.with_weights(model, snapshot["state"]), a.seed, module)

        rows.append(score("peer" if key == "diffusers" else f"peer-{key}", name, ps, at, data, judge, labels, a))
    return rows


def save_grid(images, num_classes: int, path: Path) -> None:
    """A square grid whose columns repeat the classes (the labels cycle), if diffkit.viz.images exists."""
    try:
        from diffkit.viz.images import image_grid
    except ImportError:
        return
    nrow = num_classes * max(1, 10 // num_classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images[:nrow * nrow], path, nrow=nrow)


def print_table(rows, target: float) -> None:
    cols = ["data", "model", "params", "stop", "steps", "train s", "train img/s", "sample img/s (w=3)",
            "FD w=0/1/3 (floor)", "P/R w=0", "P/R w=1", "P/R w=3 (floor)", "acc w=0/1/3 (judge)", "mix gap w=0",
            "purity w=0/1/3 (data)", f"t to acc {target:g}"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        m = [r[w] for w in SCALES]
        pr = [f"{x['precision']:.2f}/{x['recall']:.2f}" for x in m]
        purity = "/".join(f"{x['purity']:.2f}" for x in m) + f" ({r['purity_data']:.2f})" if r["purity_data"] else "-"
        t = f"{r['t_target']:.0f} s" if r["t_target"] is not None else f"> {r['seconds']:.0f} s"
        cells = [r["data"], r["model"], f"{r['params'] / 1e6:.2f}M",
                 r["stopped"] + (", compiled" if r.get("compiled") else ""), r["steps"], f"{r['seconds']:.0f}",
                 f"{r['images_per_second']:.0f}", f"{r['sample_ips']:.0f}",
                 "/".join(f"{x['fd']:.2f}" for x in m) + f" ({m[0]['fd_floor']:.2f})", pr[0], pr[1],
                 f"{pr[2]} ({m[2]['precision_floor']:.2f}/{m[2]['recall_floor']:.2f})",
                 f"-/{m[1]['class_accuracy']:.3f}/{m[2]['class_accuracy']:.3f} ({m[2]['judge_accuracy']:.3f})",
                 f"{m[0]['mix_gap_pp']:.1f} pp", purity, t]
        print("| " + " | ".join(map(str, cells)) + " |")


def print_headline(rows, target: float) -> None:
    for spec in dict.fromkeys(r["data"] for r in rows):
        by = {r["key"]: r for r in rows if r["data"] == spec}
        for k, r in by.items():
            print(f"# {spec} {k}: w = 3 accuracy at " + ", ".join(f"{t:.0f} s {acc:.3f}" for t, acc in r["curve"]))
        if len(by) < 2:
            continue
        d = by["diffkit"]["t_target"]
        for key in (k for k in by if k != "diffkit"):
            p = by[key]["t_target"]
            if d is None:
                ratio = "no ratio: diffkit did not reach it"
            else:
                ratio = f"{key} / diffkit {'= %.2f' % (p / d) if p is not None else '> %.2f' % (by[key]['seconds'] / d)}x"
            print(f"# headline {spec}: time to {target:g} guided accuracy: diffkit {_secs(d)}, {by[key]['model']} "
                  f"{_secs(p)}; {ratio}")


def _secs(t: float | None) -> str:
    return "not reached" if t is None else f"{t:.0f} s"


# --levers ----------------------------------------------------------------------------------------------
def diffkit_step(data, spec: str, batch: int, bf16=False, channels_last=False, compiled=False):
    """One step equal to the trainer's (train_step) on diffkit's preset U-Net, with the levers applied."""
    cfg = default_config(spec, cond=True)
    cfg.network.num_classes = data.num_classes
    torch.manual_seed(0)
    net = build_network(cfg.network).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    forward, schedule, tc = (torch.compile(net) if compiled else net), cfg.schedule.build(), cfg.train
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    ema, params = EMA(net, tc.ema_halflife, tc.ema_rampup), list(net.parameters())
    conditioning, g = ClassConditioning(data.num_classes), torch.Generator().manual_seed(0)
    x, y = torch.from_numpy(data.train) * 2 - 1, torch.from_numpy(data.train_labels)  # pixels to [-1, 1]
    seen = [0]

    def step():
        idx = torch.randint(0, len(x), (batch,), generator=g)
        x0 = x[idx].contiguous(memory_format=fmt)
        t, eps = torch.randint(0, schedule.num_timesteps, (batch,), generator=g), torch.randn(x0.shape, generator=g)
        cond = drop_conds(conditioning, y[idx], tc.p_uncond, g)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = simple_loss(forward, schedule, cfg.prediction, x0, t, eps.contiguous(memory_format=fmt), cond).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        seen[0] += batch
        ema.update(params, seen[0], batch)
    return step


def peer_step(data, spec: str, batch: int, **levers):
    return peer.recipe_parts(data, batch_size=batch, **levers)[2]


def _alarm(signum, frame):
    raise TimeoutError("took longer than the compile limit")


def time_lever(make, data, spec, steps: int, threads: int, batch: int, limit: float, **levers) -> dict:
    """Median ms per step over `steps` steps after 2 warm-up ones (the first, with compile, under `limit` s)."""
    with intra_op_threads(threads):
        step = make(data, spec, batch, **levers)
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(int(limit))
        t0 = time.perf_counter()
        try:
            step()
        except Exception as e:  # torch.compile may fail or run past the limit on a machine
            return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"}
        finally:
            signal.alarm(0)
        first = time.perf_counter() - t0
        step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    ms = 1000 * float(np.median(times))
    return {"ms": ms, "ips": batch * 1000 / ms, "first_s": first}


def levers(spec: str, a) -> None:
    data = load_images(spec)
    variants = [("fp32 (base)", {}), ("bf16 autocast", {"bf16": True}), ("channels_last", {"channels_last": True}),
                ("bf16 + channels_last", {"bf16": True, "channels_last": True})]
    variants += [(f"threads {n}", {"threads": n}) for n in (1, 2) if n != a.threads]
    variants += [(f"batch {b}", {"batch": b}) for b in (64, 256)]
    variants += [] if a.no_compile else [("torch.compile", {"compiled": True})]
    print(f"# levers on {spec} {list(data.shape)}: median of {a.lever_steps} training steps after 2 warm-up ones; "
          f"base: fp32, batch 128, {a.threads} threads; torch {torch.__version__}")
    print("| network | lever | batch | threads | ms / step | images / s | vs base | first step s |\n|" + "---|" * 8)
    for name, make in (("diffkit U-Net", diffkit_step), ("UNet2DModel (recipe)", peer_step)):
        base = None
        for label, v in variants:
            v = {"threads": a.threads, "batch": 128, **v}
            th, b = v.pop("threads"), v.pop("batch")
            r = time_lever(make, data, spec, a.lever_steps, th, b, a.compile_limit, **v)
            if "error" in r:
                print(f"| {name} | {label} | {b} | {th} | {r['error']} | - | - | - |")
                continue
            base = base or r["ips"]
            print(f"| {name} | {label} | {b} | {th} | {r['ms']:.1f} | {r['ips']:.0f} | {r['ips'] / base:.2f}x "
                  f"| {r['first_s']:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits,mnist5k,shapes", help="comma-separated image data sets")
    ap.add_argument("--seconds", type=float, help="wall-time budget per model (default: " +
                    ", ".join(f"{k} {v}" for k, v in DEFAULT_SECONDS.items()) + ")")
    ap.add_argument("--n", type=int, default=1000, help="samples per w (labels cycle through the classes)")
    ap.add_argument("--no-peer", action="store_true", help="train and score diffkit only")
    ap.add_argument("--peers", type=lambda v: [p for p in v.split(",") if p], default=["diffusers", "ddp"],
                    help="comma-separated peers: diffusers (UNet2DModel, HF recipe), ddp (denoising-diffusion-pytorch)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.95, help="guided (w = 3) class accuracy of the headline")
    ap.add_argument("--levers", action="store_true", help="time training-step speed levers instead")
    ap.add_argument("--lever-steps", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out of --levers")
    ap.add_argument("--compile-limit", type=float, default=60, help="seconds allowed for the first compiled step")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(machine.describe())
    from scipy.linalg import LinAlgWarning

    warnings.filterwarnings("ignore", category=LinAlgWarning)  # FD of small or collapsed sample sets
    specs = [s.strip() for s in a.data.split(",") if s.strip()]
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; {SAMPLER} / DPMSolverMultistep, "
          f"{STEPS} steps, seed {a.seed}")
    if a.levers:
        for spec in specs:
            levers(spec, a)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            rows += run_data(spec, a, Path(tmp))
    print_table(rows, a.target)
    print_headline(rows, a.target)
    print(f"# peak RSS {peak_rss_mib():.0f} MiB; grids in {OUT}/ if diffkit.viz.images exists")


if __name__ == "__main__":
    main()
