"""Image pictures: tile upscaling, grid layout, PNG / GIF files, forward-process cells, labelled figures."""

import numpy as np
import pytest
import torch
from PIL import Image

from diffkit.errors import DiffkitError
from diffkit.schedule import NoiseSchedule
from diffkit.viz import images as vi

B, G = vi.BORDER, vi.BORDER_VALUE


def _checker() -> np.ndarray:
    return np.array([[[[0.0, 1.0], [1.0, 0.0]]]], dtype=np.float32)  # [1, 1, 2, 2]


def _batch(n=5, c=1, h=8, w=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def test_tiles_upscale_a_checker_into_exact_blocks():
    t = vi.to_uint8_tiles(_checker(), scale=3)
    assert t.shape == (1, 6, 6, 3) and t.dtype == np.uint8
    assert (t[0, :3, :3] == 0).all() and (t[0, :3, 3:] == 255).all()
    assert (t[0, 3:, :3] == 255).all() and (t[0, 3:, 3:] == 0).all()
    auto = vi.to_uint8_tiles(_checker())  # 2 px -> scale 24 -> a 48 px tile
    assert auto.shape == (1, 48, 48, 3) and auto[0, 23, 23, 0] == 0 and auto[0, 23, 24, 0] == 255
    assert vi.to_uint8_tiles(_batch(h=8, w=8)).shape[1:3] == (48, 48)  # 8x8 digits -> 6x
    assert vi.to_uint8_tiles(_batch(n=1, h=64, w=64)).shape[1:3] == (64, 64)  # big enough: kept


def test_grayscale_becomes_three_equal_channels_and_rgb_keeps_its_order():
    t = vi.to_uint8_tiles(_batch(n=2), scale=1)
    assert (t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all()
    rgb = np.zeros((1, 3, 2, 2), np.float32)
    rgb[0, 0], rgb[0, 2] = 1.0, 0.5
    assert tuple(vi.to_uint8_tiles(rgb, scale=1)[0, 1, 1]) == (255, 0, 128)
    assert vi.to_uint8_tiles(np.array([[[[-3.0, 7.0]]]], np.float32), scale=1)[0, 0, :, 0].tolist() == [0, 255]


def test_grid_size_is_tiles_plus_borders():
    g = vi.grid_array(_batch(n=5), nrow=2, scale=2)  # 2 per row -> 3 rows of 16 px tiles
    assert g.shape == (3 * (16 + B) + B, 2 * (16 + B) + B, 3)
    sq = vi.grid_array(_batch(n=5), scale=2)  # square-ish: 3 per row, 2 rows
    assert sq.shape == (2 * (16 + B) + B, 3 * (16 + B) + B, 3)
    assert (sq[:B] == G).all() and (sq[:, B + 16:2 * B + 16] == G).all()  # outer and separating borders
    assert (sq[B + 16 + B:, 2 * (16 + B) + B:-B] == G).all()  # the 6th slot is empty
    assert vi.grid_image(_batch(n=4), scale=2).size == (2 * 18 + B, 2 * 18 + B)


def test_png_grid_rereads_with_the_pixels_in_place(tmp_path):
    x = np.zeros((4, 1, 2, 2), np.float32)
    x[1] = 1.0  # second tile white
    x[3, 0, 1, 1] = 1.0  # last tile: bottom-right pixel white
    p = vi.image_grid(x, tmp_path / "deep" / "grid.png", nrow=2, scale=5)
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (2 * 12 + B, 2 * 12 + B)
        a = np.asarray(im.convert("RGB"))
    assert (a[B:B + 10, B:B + 10] == 0).all()  # tile 0 black
    assert (a[B:B + 10, 2 * B + 10:2 * B + 20] == 255).all()  # tile 1 white
    y0 = x0 = 2 * B + 10
    assert (a[y0 + 5:y0 + 10, x0 + 5:x0 + 10] == 255).all() and (a[y0:y0 + 5, x0:x0 + 10] == 0).all()
    assert a[0, 0].tolist() == [G] * 3
    assert not list(p.parent.glob(".*.tmp"))


def test_reverse_gif_has_one_frame_per_step_and_holds_the_last(tmp_path):
    frames = [np.full((3, 1, 8, 8), k / 4, np.float32) for k in range(5)]
    caps = [f"step {i + 1}/5, t = {800 - 200 * i}" for i in range(5)]
    p = vi.reverse_gif(frames, tmp_path / "rev.gif", duration_ms=50, hold_last=4, captions=caps)
    with Image.open(p) as im:
        assert im.n_frames == 5 and im.info["loop"] == 0
        grid = vi.grid_image(frames[0])
        assert im.height == grid.height + 16 and im.width >= grid.width
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        last = np.asarray(im.convert("RGB"))
    assert durations == [50, 50, 50, 50, 250]
    assert (last[16 + B + 10, (last.shape[1] - grid.width) // 2 + B + 10] == 255).all()  # last frame: all white
    with Image.open(vi.reverse_gif(frames[:2], tmp_path / "plain.gif", nrow=3)) as im:
        assert im.n_frames == 2 and im.size == vi.grid_image(frames[0], nrow=3).size
    with pytest.raises(DiffkitError, match="captions"):
        vi.reverse_gif(frames, tmp_path / "x.gif", captions=caps[:2])
    with pytest.raises(DiffkitError, match="same shape"):
        vi.reverse_gif([frames[0], frames[1][:2]], tmp_path / "x.gif")


def test_forward_cells_follow_q_sample_with_one_eps():
    rng = np.random.default_rng(1)
    image = rng.random((1, 4, 4), dtype=np.float32)
    eps = torch.from_numpy(rng.standard_normal((1, 4, 4)))
    lin = NoiseSchedule.from_name("linear", 1000)
    cells = vi.forward_cells(image, lin, [-1, 0, 500, 999], eps)
    assert cells.shape == (4, 1, 4, 4) and cells.dtype == np.float32
    np.testing.assert_allclose(cells[0], image, atol=1e-6)  # t = -1 is x_0 itself
    np.testing.assert_allclose(cells[1], image, atol=0.03)  # t = 0: beta_0 = 1e-4 of noise
    ab = float(lin.alphas_cumprod[500])
    expect = np.clip((np.sqrt(ab) * (2 * image - 1) + np.sqrt(1 - ab) * eps.numpy() + 1) / 2, 0, 1)
    np.testing.assert_allclose(cells[2], expect, atol=1e-6)
    # the same eps in every cell and schedule: a grey image's unclipped pixels all give back eps
    grey = np.full((1, 4, 4), 0.5, np.float32)
    for sched in (lin, NoiseSchedule.from_name("cosine", 1000)):
        for t, cell in zip([100, 300], vi.forward_cells(grey, sched, [100, 300], eps)):
            inside = (cell > 0) & (cell < 1)
            got = (2 * cell - 1) / np.sqrt(1 - float(sched.alphas_cumprod[t]))
            np.testing.assert_allclose(got[inside], eps.numpy()[inside], atol=1e-5)


def _capture(monkeypatch):
    """Record each figure's axes (as title, ylabel) before the real save."""
    seen = []
    real = vi.save

    def spy(fig, path):
        seen.append([(ax.get_title(), ax.get_ylabel()) for ax in fig.axes])
        return real(fig, path)

    monkeypatch.setattr(vi, "save", spy)
    return seen


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_forward_strip_draws_schedules_by_t(tmp_path, monkeypatch):
    seen = _capture(monkeypatch)
    scheds = {n: NoiseSchedule.from_name(n, 1000) for n in ("linear", "cosine")}
    p = vi.forward_strip(_batch(n=1, c=3)[0], scheds, [0, 250, 999], tmp_path / "fwd.png")
    w, h = _png_size(p)
    assert 250 < w < 1000 and 200 < h < 800
    axes = seen[0]
    assert len(axes) == 6 and [a[1] for a in axes[::3]] == ["linear", "cosine"]
    assert axes[1][0] == f"t = 250\nSNR {float(scheds['linear'].snr_db[250]):.1f} dB"
    assert axes[4][0] == f"t = 250\nSNR {float(scheds['cosine'].snr_db[250]):.1f} dB"
    with pytest.raises(DiffkitError, match="t must lie"):
        vi.forward_strip(_batch(n=1)[0], scheds, [1000], tmp_path / "bad.png")


def test_guidance_sweep_and_class_grid_have_one_row_per_class(tmp_path, monkeypatch):
    seen = _capture(monkeypatch)
    x = _batch(n=3)
    p = vi.guidance_sweep({3.0: x, 1.0: x, 7.5: x}, tmp_path / "w.png", class_names=["zero", "one", "two"])
    axes = seen[0]
    assert len(axes) == 9 and [a[0] for a in axes[:3]] == ["w = 1", "w = 3", "w = 7.5"]  # sorted columns
    assert [a[1] for a in axes[::3]] == ["zero", "one", "two"]
    h3 = _png_size(p)[1]
    h1 = _png_size(vi.guidance_sweep({1.0: x[:1], 2.0: x[:1]}, tmp_path / "w1.png"))[1]
    assert h3 > 2 * h1
    p = vi.class_grid(_batch(n=7), [2, 0, 2, 2, 0, 1, 2], tmp_path / "c.png", ["a", "b", "c"], per_class=2)
    assert [a[1] for a in seen[-1]] == ["a", "b", "c"]
    w, h = _png_size(p)
    assert h > 100 and w > 2 * 48
    with pytest.raises(DiffkitError, match="one label per image"):
        vi.class_grid(_batch(n=3), [0, 1], tmp_path / "bad.png")


def test_reverse_strip_and_bad_shapes(tmp_path, monkeypatch):
    seen = _capture(monkeypatch)
    frames = [_batch(n=2, seed=s) for s in range(4)]
    vi.reverse_strip(frames, ["t = 999", "t = 600", "t = 300", "t = 0"], tmp_path / "r.png", "DDPM")
    assert len(seen[0]) == 8 and seen[0][3][0] == "t = 0" and seen[0][4][0] == ""
    with pytest.raises(DiffkitError, match="one label per frame"):
        vi.reverse_strip(frames, ["a"], tmp_path / "r.png", "x")
    with pytest.raises(DiffkitError, match=r"\[N, C, H, W\]"):
        vi.to_uint8_tiles(np.zeros((2, 2, 8, 8), np.float32))
