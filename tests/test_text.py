"""Text to image: the frozen encoder, captions and the prompt grammar, cross-attention, the adherence checker."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffkit.cond import TokenConditioning
from diffkit.data.shapes import COLOUR_NAMES, make_shapes, render_shape
from diffkit.errors import DataError
from diffkit.metrics.shapes import adherence, read_shapes
from diffkit.nn.dit import DiT, DiTConfig
from diffkit.nn.unet import UNet, UNetConfig
from diffkit.text.captions import (
    DIGIT_PARAPHRASES,
    DIGIT_TEMPLATES,
    HELD_OUT_COMBOS,
    PARAPHRASE_TEMPLATES,
    POSITION_NAMES,
    TRAIN_TEMPLATES,
    digit_caption,
    digit_prompt_class,
    position_cells,
    shape_caption,
    shape_prompt_attributes,
    shapes_captions,
)
from diffkit.text.encoder import load_encoder, null_tokens


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()  # once per process (lru_cache)


# --- the encoder -----------------------------------------------------------------------------------------

def test_encoder_gives_token_embeddings_and_a_padding_mask(encoder):
    out = encoder.encode(["a large red circle at the top left", "a disc"])
    tokens, mask = out["tokens"], out["mask"]
    assert tokens.shape == (2, 10, 384) and mask.dtype == torch.bool
    assert mask[0].all() and mask[1].tolist() == [True] * 4 + [False] * 6  # [CLS] a disc [SEP], then padding
    assert torch.isfinite(tokens).all() and tokens.std() > 0.1
    again = encoder.encode(["a disc"])
    torch.testing.assert_close(again["tokens"][0], tokens[1, :4], atol=1e-5, rtol=1e-5)  # padding changes nothing
    assert encoder.max_tokens == 256 and encoder.dim == 384


def test_paraphrases_lie_closer_than_different_prompts(encoder):
    from diffkit.nn.attention import pooled

    out = encoder.encode(["a large red circle", "a big red disc", "a small blue triangle"])
    v = torch.nn.functional.normalize(pooled(out["tokens"], out["mask"]), dim=1)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1


def test_empty_prompt_and_too_long_prompt(encoder, capsys):
    with pytest.raises(DataError, match="the prompt is empty"):
        encoder.encode(["   "])
    long = " ".join(["red"] * 400)
    out = encoder.encode([long])
    assert out["tokens"].shape[1] == 256
    assert "has 402 tokens; the text encoder reads at most 256, so it was cut" in capsys.readouterr().err


def test_the_encoder_never_reaches_the_network():
    """In a fresh process whose sockets all fail, the encoder still loads and encodes."""
    code = """
import socket
def refuse(*a, **k):
    raise OSError("networking is disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from diffkit.text.encoder import load_encoder
out = load_encoder().encode(["a small blue triangle at the bottom right"])
print(tuple(out["tokens"].shape))
"""
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(1, 10, 384)"


def test_null_is_the_empty_prompt_padded_to_the_batch():
    tokens, mask = null_tokens()
    assert mask.tolist() == [True, True]  # [CLS] [SEP]
    cond = {"tokens": torch.randn(3, 7, 384), "mask": torch.ones(3, 7, dtype=torch.bool)}
    null = TokenConditioning(tokens, mask).null(cond)
    assert null["tokens"].shape == (3, 7, 384) and null["mask"][:, :2].all() and not null["mask"][:, 2:].any()
    torch.testing.assert_close(null["tokens"][1, :2], tokens)
    dropped = TokenConditioning(tokens, mask).drop(cond, torch.tensor([True, False, True]))
    assert torch.equal(dropped["tokens"][1], cond["tokens"][1]) and torch.equal(dropped["tokens"][0], null["tokens"][0])


# --- captions and the prompt grammar -----------------------------------------------------------------------

def test_every_caption_reads_back_as_its_attributes():
    """Training captions and held-out paraphrases, every combination and position, several synonym draws."""
    rng = np.random.default_rng(0)
    for templates in (TRAIN_TEMPLATES, PARAPHRASE_TEMPLATES):
        for shape, colour, size, cell in itertools.product(range(3), range(6), range(2), range(-1, 9)):
            for _ in range(3):
                caption = shape_caption(rng, templates, shape, colour, size, cell)
                want = {"shape": shape, "colour": colour, "size": size, **({"position": cell} if cell >= 0 else {})}
                assert shape_prompt_attributes(caption) == want, caption
                assert "  " not in caption and not caption.endswith(",")
    for d, t in itertools.product(range(10), DIGIT_TEMPLATES + DIGIT_PARAPHRASES):
        assert digit_prompt_class(digit_caption(t, d)) == d


def test_position_cells_split_the_range_of_centres_in_thirds():
    # small shapes at 32 px: centres in [5, 27], cells of 22 / 3 px; borders at 12.33 and 19.67
    cells = position_cells([6, 16, 26, 12.2, 16], [6, 6, 26, 16, 19.5], [0, 0, 0, 0, 0], 32)
    assert cells.tolist() == [0, 1, 8, -1, -1]  # the last two lie within half a pixel of a border
    assert POSITION_NAMES[int(position_cells([6], [16], [0], 32)[0])] == "left"


def test_held_out_combinations_and_paraphrases_stay_out_of_training():
    _, _, attributes = make_shapes(3000, 0)
    captions, choices, keep = shapes_captions(attributes, 32)
    magenta_square = (attributes["colour"] == COLOUR_NAMES.index("magenta")) & (attributes["shape"] == 1)
    small_green_triangle = (attributes["size"] == 0) & (attributes["colour"] == 1) & (attributes["shape"] == 2)
    assert np.array_equal(~keep, magenta_square | small_green_triangle) and keep.mean() > 0.85
    assert len(HELD_OUT_COMBOS) == 2
    kept_captions = {captions[i] for i in choices[keep].ravel()}
    for c in kept_captions:
        a = shape_prompt_attributes(c)
        assert not (a["colour"] == 4 and a["shape"] == 1)
        assert not any(c.startswith(p.split("{")[0]) for p in PARAPHRASE_TEMPLATES if not p.startswith("{"))
        assert " you can see " not in c and "coloured" not in c
    # each image's captions name its own attributes
    for i in np.flatnonzero(keep)[:200]:
        for c in (captions[j] for j in choices[i]):
            a = shape_prompt_attributes(c)
            assert (a["shape"], a["colour"], a["size"]) == tuple(int(attributes[k][i]) for k in ("shape", "colour", "size"))


# --- the adherence checker ------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [32, 64])
def test_checker_reads_rendered_images_to_99_percent_per_attribute(side):
    images, _, a = make_shapes(2000, 7, side)
    found = read_shapes(images)
    for name in ("shape", "colour", "size"):
        assert (found[name] == a[name]).mean() >= 0.99, name
    cells = position_cells(a["x"], a["y"], a["size"], side)
    stated = cells >= 0
    assert stated.mean() > 0.7 and (found["position"][stated] == cells[stated]).mean() >= 0.99


def test_checker_on_hand_made_images():
    img = render_shape("triangle", "magenta", "large", 16, 16)
    speck = img.copy()
    speck[:, 0, 0] = 1.0  # a white speck elsewhere: the largest region still decides
    found = read_shapes(np.stack([img, speck, np.zeros_like(img)]))
    assert found["shape"].tolist() == [2, 2, -1] and found["colour"].tolist() == [4, 4, -1]
    assert found["size"].tolist() == [1, 1, -1] and found["position"].tolist()[:2] == [4, 4]
    m = adherence(np.stack([img, img]), {"shape": np.array([2, 0]), "colour": np.array([4, 4]),
                                          "position": np.array([-1, -1])})
    assert m == {"shape": 0.5, "colour": 1.0, "all": 0.5}


# --- cross-attention networks -------------------------------------------------------------------------------

def _nets():
    torch.manual_seed(0)
    unet = UNet(UNetConfig(in_channels=3, channels=16, channel_mult=(1, 2), context_dim=24).check())
    dit = DiT(DiTConfig(in_channels=3, patch_size=2, width=32, depth=2, heads=2, context_dim=24))
    for net in (unet, dit):  # leave the zero initialisation, so that every path carries signal
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
    return unet, dit


@pytest.mark.parametrize("which", [0, 1], ids=["unet", "dit"])
def test_cross_attention_reads_the_tokens_and_ignores_padding(which):
    net = _nets()[which].eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10.0, 500.0])
    tokens, mask = torch.randn(2, 5, 24), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = net(x, t, {"tokens": tokens, "mask": mask})
    other = tokens.clone()
    other[0, 3:] = 100.0  # padding of row 0: no effect
    torch.testing.assert_close(net(x, t, {"tokens": other, "mask": mask}), out)
    longer = {"tokens": torch.cat([tokens, torch.randn(2, 3, 24)], 1),
              "mask": torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)}
    torch.testing.assert_close(net(x, t, longer), out, atol=1e-5, rtol=1e-5)  # more padding: no effect
    changed = tokens.clone()
    changed[1, 2] += 1.0  # a real token: changes that row only
    moved = net(x, t, {"tokens": changed, "mask": mask})
    torch.testing.assert_close(moved[0], out[0])
    assert (moved[1] - out[1]).abs().max() > 1e-4
