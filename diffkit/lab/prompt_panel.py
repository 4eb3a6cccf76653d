"""The lab's prompt panel: samples of a text run for one prompt at one guidance scale, from the same seed every
time (so moving the slider shows what w alone changes), and for shapes runs the attributes read back."""

from __future__ import annotations

from ..errors import DiffkitError


def prompt_panel(run, name: str, prompt: str, w: float, n: int, seed: int, steps: int) -> dict:
    from ..metrics.adherence import SHAPES_SETS, prompt_adherence
    from ..runs import sample_run
    from ..text.captions import shape_prompt_attributes
    from ..text.encoder import check_prompt, load_encoder

    if not run.config.data.text:
        raise DiffkitError(f"run {name!r} was not trained on captions (--text), so it cannot follow a prompt")
    prompt = check_prompt(prompt)
    encoder = load_encoder(run.config.data.text)
    tokens = encoder.token_counts([prompt])[0]
    x = sample_run(run, n, "dpmpp-2m", steps, seed=seed, prompt=prompt, guidance=w)
    out = {"prompt": prompt, "w": w, "tokens": tokens, "max_tokens": encoder.max_tokens,
           "truncated": tokens > encoder.max_tokens, "shape": run.config.fitted.image_shape, "samples": x,
           "adherence": None}
    if run.config.data.spec in SHAPES_SETS and shape_prompt_attributes(prompt):  # a prompt that names attributes
        out["adherence"] = prompt_adherence(x, [prompt], run.config.data.spec)["overall"]
    return out
