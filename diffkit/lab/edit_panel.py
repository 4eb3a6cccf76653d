"""The lab's "Edit" panel: a held-out image of the run's data, a mask painted on it (or a preset), inpainted or
moved towards a class or prompt by img2img at a strength; the kept pixels are checked and reported."""

from __future__ import annotations

import numpy as np

from ..errors import DiffkitError


def edit_panel(run, name: str, index: int, mask: list[int] | None, strength: float | None, cls: int | None,
               prompt: str | None, w: float, seed: int, steps: int) -> dict:
    from ..data.images import load_images
    from ..runs.edit import edit_run

    shape = run.config.fitted.image_shape
    if shape is None:
        raise DiffkitError(f"run {name!r} makes points; the edit panel edits images")
    try:
        data = load_images(run.config.data.spec, seed=run.config.train.seed)
    except DiffkitError:
        raise DiffkitError(f"the data of run {name!r} ({run.config.data.spec}) cannot be loaded, so there is no "
                           "held-out image to edit") from None
    image = data.test[index % len(data.test)]
    plane = None
    if mask is not None:
        if len(mask) != shape[1] * shape[2]:
            raise DiffkitError(f"the mask has {len(mask)} cells but the image has {shape[1]}x{shape[2]} pixels")
        plane = np.asarray(mask, np.float32).reshape(shape[1:])
    if run.config.data.text and cls is not None:
        raise DiffkitError(f"run {name!r} follows prompts; give a prompt, not a class")
    if not run.config.data.text and prompt:
        raise DiffkitError(f"run {name!r} takes " + ("a class" if run.config.network.num_classes else "no condition")
                           + ", not a prompt")
    target = {"prompt": prompt} if prompt else {"cond": cls} if cls is not None else {}
    out = edit_run(run, image, mask=plane, strength=strength, sampler="dpmpp-2m", steps=steps, seed=seed,
                   guidance=w if target else None, **target)[0]
    kept = None if plane is None else float(np.abs(out - image)[:, plane == 0].max(initial=0.0))
    return {"input": image, "result": out, "shape": shape, "index": int(index % len(data.test)),
            "label": None if data.test_labels is None else int(data.test_labels[index % len(data.test)]),
            "kept_change": kept, "strength": strength if strength is not None else (1.0 if plane is not None else 0.6)}
