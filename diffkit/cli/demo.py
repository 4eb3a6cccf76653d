"""`diffkit demo`: the points or image story in one command."""

from __future__ import annotations

from ..errors import ConfigError


def cmd_demo(a) -> None:
    from ..data.images import IMAGE_DATASETS

    if a.data in IMAGE_DATASETS:
        from ..demo import run_image_demo

        run_image_demo(a.out, a.data, steps=a.steps, n=a.n or 1000, progress=not a.quiet)
    elif a.data == "spiral":
        from ..demo import run_demo

        run_demo(a.out, steps=a.steps, n=a.n or 4000, progress=not a.quiet)
    else:
        raise ConfigError(f"the demo runs on spiral or an image set ({', '.join(IMAGE_DATASETS)}), got {a.data!r}")
