"""The CLI's text-to-image parts: prompts from flags and files, a grid with one row per prompt, eval --prompts."""

from __future__ import annotations

import json

from ..errors import ConfigError

GRID_COLUMNS = 10  # images of each prompt in a --grid row


def prompts_of(a) -> list[str] | None:
    """The prompts of `diffkit sample` (every --prompt, then the lines of --prompts), or None for neither."""
    from ..text.data import read_prompts

    prompts = list(a.prompt or []) + (read_prompts(a.prompts) if a.prompts else [])
    if prompts and a.cls is not None:
        raise ConfigError("--class and --prompt condition different kinds of run (class labels, text); give one")
    return prompts or None


def prompt_grid(x, n_prompts: int, path) -> None:
    """A PNG grid with one row per prompt: the first GRID_COLUMNS samples of each."""
    from ..viz.images import image_grid

    k = len(x) // n_prompts
    cols = min(k, GRID_COLUMNS)
    rows = x.reshape(n_prompts, k, *x.shape[1:])[:, :cols]
    image_grid(rows.reshape(-1, *x.shape[1:]), path, nrow=cols)


def cmd_eval_prompts(a, device) -> None:
    """diffkit eval --samples S.npy --prompts FILE --data shapes|mnist5k|...: adherence per prompt and overall."""
    from ..metrics.adherence import prompt_adherence
    from ..runs import read_image_samples
    from ..text.data import read_prompts

    if a.cls is not None:
        raise ConfigError("--class and --prompts score different kinds of samples; give one")
    prompts = read_prompts(a.prompts)
    samples = read_image_samples(a.samples)
    m = prompt_adherence(samples, prompts, a.data, device=device)
    if a.json:
        print(json.dumps(m, indent=2))
        return
    names = [k for k in m["prompts"][0] if k not in ("prompt", "n")]
    width = min(48, max(len(p) for p in prompts))
    print(f"{'prompt':<{width}} {'n':>4} " + " ".join(f"{k:>8}" for k in names))
    for row in m["prompts"]:
        cells = " ".join("       -" if row.get(k) is None else f"{row[k]:>8.3f}" for k in names)
        print(f"{row['prompt'][:width]:<{width}} {row['n']:>4} {cells}")
    overall = m["overall"]
    print(f"{'all prompts':<{width}} {len(samples):>4} " + " ".join(
        "       -" if overall.get(k) is None else f"{overall[k]:>8.3f}" for k in names))
    print("accuracy per attribute: the share of samples whose image shows what the prompt asked for (- : not asked); "
          "all: every asked-for attribute at once" if a.data.startswith("shapes") else
          "digit: the share of samples the judge reads as the prompt's digit")
