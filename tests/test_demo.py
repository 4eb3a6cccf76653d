"""`diffkit demo` on the spiral, the README's first command, end to end: the table of samplers and every picture
it names, each a readable image (the animation with its frames), and the samples it saves."""

from __future__ import annotations

import numpy as np
from PIL import Image

from diffkit.cli import main


def test_the_spiral_demo_writes_its_samples_and_every_picture(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "40", "--n", "300", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert "ddpm" in stdout and "ddim" in stdout  # the table: both samplers, timed and scored
    pictures = {"forward.png", "reverse.png", "schedules.png", "loss.png", "samples_ddpm.png", "samples_ddim.png",
                "reverse.gif"}
    assert {p.name for p in (out / "plots").iterdir()} >= pictures
    for name in pictures:
        with Image.open(out / "plots" / name) as im:
            im.load()
            assert im.width > 100 and im.height > 100
            if name.endswith(".gif"):
                assert im.n_frames > 5  # the reverse process, frame by frame
            else:  # not a blank canvas: the plot drew something
                assert len(np.unique(np.asarray(im.convert("L")))) > 10
    for sampler in ("ddpm", "ddim"):
        x = np.load(out / f"samples_{sampler}.npy")
        assert x.shape == (300, 2) and np.isfinite(x).all()
