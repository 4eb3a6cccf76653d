"""Static pictures of the diffusion story: forward process, reverse process, schedules, loss, samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DiffkitError


def plt():
    """matplotlib.pyplot on the headless Agg backend (viz extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise DiffkitError("pictures need matplotlib; install it with `pip install 'diffkit[viz]'`") from None
    return pyplot


def limits(points: np.ndarray, pad: float = 0.15):
    lo, hi = np.quantile(points, 0.001, axis=0), np.quantile(points, 0.999, axis=0)
    span = (hi - lo).max() * (1 + 2 * pad)
    mid = (hi + lo) / 2
    return (mid[0] - span / 2, mid[0] + span / 2), (mid[1] - span / 2, mid[1] + span / 2)


def scatter_on(ax, x, lims=None, title=None, **kw):
    ax.scatter(x[:, 0], x[:, 1], s=kw.pop("s", 2), alpha=kw.pop("alpha", 0.6), linewidths=0, **kw)
    if lims is not None:
        ax.set_xlim(*lims[0])
        ax.set_ylim(*lims[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt().close(fig)
    return path


def strip(frames: list[tuple[str, np.ndarray]], path, title: str, lims=None) -> Path:
    """A row of scatter plots, e.g. x_t at several t."""
    p = plt()
    fig, axes = p.subplots(1, len(frames), figsize=(2.2 * len(frames), 2.5))
    lims = lims or limits(frames[0][1])
    for ax, (label, x) in zip(np.atleast_1d(axes), frames):
        scatter_on(ax, x, lims, label)
    fig.suptitle(title, fontsize=11)
    return save(fig, path)


def schedules(named: dict, path) -> Path:
    """alpha_bar_t and SNR_t in dB for several NoiseSchedules side by side."""
    p = plt()
    fig, (a1, a2) = p.subplots(1, 2, figsize=(9, 3.3))
    for name, sched in named.items():
        t = np.arange(sched.num_timesteps)
        a1.plot(t, sched.alphas_cumprod.numpy(), label=name)
        a2.plot(t, sched.snr_db.numpy(), label=name)
    a1.set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"signal kept: $\bar\alpha_t$")
    a2.set(xlabel="t", ylabel="SNR (dB)", title=r"SNR$_t = \bar\alpha_t / (1-\bar\alpha_t)$")
    a2.set_ylim(-60, 50)
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    return save(fig, path)


def loss_curve(log: dict, path) -> Path:
    p = plt()
    fig, ax = p.subplots(figsize=(5, 3.2))
    ax.plot(log["step"], log["loss"])
    ax.set(xlabel="step", ylabel="loss (L_simple)", title="training loss", yscale="log")
    ax.grid(alpha=0.3)
    return save(fig, path)


def samples_over_data(samples: np.ndarray, data: np.ndarray, path, title: str = "samples over data") -> Path:
    p = plt()
    fig, ax = p.subplots(figsize=(4.2, 4.2))
    lims = limits(data)
    scatter_on(ax, data, lims, color="0.7", label="data")
    scatter_on(ax, samples, lims, title, color="C3", label="samples")
    ax.legend(loc="upper right", fontsize=8, markerscale=4)
    return save(fig, path)


def scatter(samples: np.ndarray, path, title: str = "samples") -> Path:
    p = plt()
    fig, ax = p.subplots(figsize=(4.2, 4.2))
    scatter_on(ax, samples, limits(samples), title, color="C3")
    return save(fig, path)


def quality_table_plot(rows: list[dict], path) -> Path:
    """Bar chart of energy distance per sampler with the data floor as a line."""
    p = plt()
    fig, ax = p.subplots(figsize=(5, 3))
    names = [f"{r['sampler']}-{r['steps']}" for r in rows]
    ax.bar(names, [max(r["energy"], 1e-6) for r in rows], color="C0")
    ax.axhline(max(rows[0]["energy_floor"], 1e-6), color="k", ls="--", label="data floor")
    ax.set(ylabel="energy distance", yscale="log", title="sample quality")
    ax.legend()
    return save(fig, path)


def guidance_grid(panels: dict, data: np.ndarray, path, class_names=None, title: str = "guidance") -> Path:
    """Rows = classes, columns = guidance scales: panels[(c, w)] are class c's samples at scale w (the same
    seed in every column), each over the real data in grey."""
    p = plt()
    classes = sorted({c for c, _ in panels})
    scales = sorted({w for _, w in panels})
    fig, axes = p.subplots(len(classes), len(scales), figsize=(2.1 * len(scales), 2.2 * len(classes)), squeeze=False)
    lims = limits(data)
    for i, c in enumerate(classes):
        for j, w in enumerate(scales):
            ax = axes[i, j]
            scatter_on(ax, data, lims, color="0.85", s=1)
            scatter_on(ax, panels[(c, w)], lims, f"w = {w:g}" if i == 0 else None, color=f"C{c}", s=2)
        name = class_names[c] if class_names else str(c)
        axes[i, 0].set_ylabel(f"class {c}: {name}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    return save(fig, path)
