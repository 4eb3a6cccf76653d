"""How well samples obey their prompts: per attribute on shapes (metrics/shapes.py reads each image back), by the
digit judge on digits and mnist5k. Samples come k per prompt, prompt 0's first (as `diffkit sample --prompts`
writes them)."""

from __future__ import annotations

import numpy as np

from ..data.images import load_images
from ..errors import DataError
from ..text.captions import digit_prompt_class, shape_prompt_attributes
from ..text.encoder import shorten
from .images import check_images
from .judge import load_or_train_judge
from .shapes import ATTRIBUTES, adherence

SHAPES_SETS = ("shapes", "shapes64")
DIGIT_SETS = ("digits", "mnist5k")


def per_prompt(samples, prompts: list[str]) -> int:
    """k, the samples per prompt, checked."""
    if not prompts:
        raise DataError("no prompts to score against; give a prompts file with one prompt per line")
    if len(samples) % len(prompts) or not len(samples):
        raise DataError(f"{len(samples)} samples do not split evenly over {len(prompts)} prompts; score the samples "
                        "`diffkit sample --prompts FILE --n K` wrote for the same file (K per prompt)")
    return len(samples) // len(prompts)


def prompt_adherence(samples, prompts: list[str], spec: str, *, progress: bool = True, device=None) -> dict:
    """{"overall": {attribute: accuracy, "all": ...}, "prompts": [{"prompt", "n", attribute: accuracy, ...}]}."""
    k = per_prompt(samples, prompts)
    if spec in SHAPES_SETS:
        wanted = [shape_prompt_attributes(p) for p in prompts]
        vague = [p for p, w in zip(prompts, wanted) if not w]
        if vague:
            raise DataError(f"the prompt {shorten(vague[0])!r} names no shape, colour, size or position, so its samples "
                            "cannot be checked; describe a shape (e.g. \"a small blue triangle at the bottom right\")")
        columns = {a: np.repeat([w.get(a, -1) for w in wanted], k) for a in ATTRIBUTES}
        rows = [{"prompt": p, "n": k, **adherence(samples[i * k:(i + 1) * k], {a: c[i * k:(i + 1) * k]
                                                                             for a, c in columns.items()})}
                for i, p in enumerate(prompts)]
        return {"overall": adherence(samples, columns), "prompts": rows}
    if spec in DIGIT_SETS:
        digits = [digit_prompt_class(p) for p in prompts]
        if None in digits:
            raise DataError(f"the prompt {shorten(prompts[digits.index(None)])!r} names no digit; write e.g. \"the "
                            "digit 7\" or \"a handwritten seven\"")
        data = load_images(spec)
        judge = load_or_train_judge(data, progress=progress)
        if device is not None:
            judge.to(device)
        right = judge.predict(check_images(np.asarray(samples), data)) == np.repeat(digits, k)
        rows = [{"prompt": p, "n": k, "digit": float(right[i * k:(i + 1) * k].mean())} for i, p in enumerate(prompts)]
        return {"overall": {"digit": float(right.mean()), "judge_accuracy": judge.test_accuracy}, "prompts": rows}
    raise DataError(f"prompt adherence is measured on {', '.join(SHAPES_SETS + DIGIT_SETS)}, whose images can be "
                    f"checked against a prompt; {spec} cannot")
