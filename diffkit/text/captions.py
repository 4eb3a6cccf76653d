"""Captions of the built-in image sets, from what is known about each image, and the prompt grammar read back.

shapes / shapes64: "a large red circle at the top left". Position is a 3 x 3 grid over the centres where the
shape fits (data/shapes.py: the centre is uniform on [e/2, S - e/2] for extent e); a caption names the cell only
when the centre lies at least half a pixel (at 32 px; scaled with the side) inside it (77% to 80% of images),
and leaves position out otherwise, so every caption is true to the pixel. Training captions use TRAIN_TEMPLATES with synonyms (big / large, disc /
circle, upper / top, middle / centre); PARAPHRASE_TEMPLATES and the HELD_OUT_COMBOS (every magenta square, every
small green triangle) never appear in training and measure paraphrase and composition generalisation.
mnist5k / digits: "a handwritten seven", "the digit 7", ...
"""

from __future__ import annotations

import re

import numpy as np

from ..data.shapes import COLOUR_NAMES, SHAPE_NAMES, SIZE_FRACTIONS, SIZE_NAMES

POSITION_NAMES: tuple[str, ...] = ("top left", "top", "top right", "left", "centre", "right",
                                   "bottom left", "bottom", "bottom right")  # row-major 3 x 3 grid
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",)}
ROW_WORDS = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
_WHERE = {"top": ("at the top", "along the top"), "bottom": ("at the bottom", "along the bottom"),
          "left": ("on the left", "at the left"), "right": ("on the right", "at the right"),
          "centre": ("in the centre", "in the middle")}

TRAIN_TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape} {where}",
    "{where}, a {size} {colour} {shape}",
    "a {colour} {shape}, {size}, {where}",
    "{size} {colour} {shape} {where}",
    "a {size} {shape} in {colour} {where}",
    "one {colour} {shape} of {size} size {where}",
)
PARAPHRASE_TEMPLATES: tuple[str, ...] = (  # held out of training
    "there is a {size} {colour} {shape} {where}",
    "a picture of a {size} {shape}, coloured {colour}, {where}",
    "{where} you can see a {colour} {shape} that is {size}",
)
HELD_OUT_COMBOS: tuple[dict, ...] = ({"colour": "magenta", "shape": "square"},
                                     {"size": "small", "colour": "green", "shape": "triangle"})
VARIANTS = 8  # training captions per (shape, colour, size, position): templates x synonyms, drawn once

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES: tuple[str, ...] = ("a handwritten {word}", "the digit {n}", "the number {word}", "a {word}",
                                    "an image of the digit {word}", "a handwritten {n}")
DIGIT_PARAPHRASES: tuple[str, ...] = ("a picture of the number {n} written by hand", "{word}, written by hand")


def position_cells(x, y, size, image_size: int, margin: float | None = None) -> np.ndarray:
    """The grid cell (index into POSITION_NAMES) of each centre, int64 [N]; -1 within `margin` pixels of a cell
    border (default half a pixel per 32 px of side: the checker reads a centre to within half a pixel)."""
    margin = 0.5 * image_size / 32 if margin is None else margin
    extent = np.array([SIZE_FRACTIONS[s] for s in SIZE_NAMES])[np.asarray(size)] * image_size
    width = (image_size - extent) / 3  # cell width of the centre's range

    def axis(v):
        u = (np.asarray(v, np.float64) - extent / 2) / width  # 0..3 across the range
        cell = np.clip(np.floor(u), 0, 2).astype(np.int64)
        border = np.minimum(np.abs(u - 1), np.abs(u - 2)) * width
        return cell, border < margin

    col, near_c = axis(x)
    row, near_r = axis(y)
    return np.where(near_c | near_r, -1, row * 3 + col)


def where_phrases(cell: int) -> tuple[str, ...]:
    """The ways a caption can say a grid cell ("" for -1: position not stated)."""
    if cell < 0:
        return ("",)
    name = POSITION_NAMES[cell]
    if " " in name:  # a corner
        row, col = name.split()
        return tuple(f"{p} the {r} {col}" for r in ROW_WORDS[row] for p in ("at", "in"))
    return _WHERE[name]


def fill(template: str, **words) -> str:
    """A template with its words; an empty {where} leaves no stray comma or space."""
    text = template.format(**words)
    return re.sub(r"\s+", " ", re.sub(r"\s+,", ",", text)).strip(" ,")


def shape_caption(rng: np.random.Generator, templates, shape: int, colour: int, size: int, cell: int) -> str:
    """One caption of these attributes: a template and synonyms drawn from rng."""
    def pick(options):
        return options[int(rng.integers(len(options)))]

    return fill(pick(templates), size=pick(SIZE_WORDS[SIZE_NAMES[size]]), colour=COLOUR_NAMES[colour],
                shape=pick(SHAPE_WORDS[SHAPE_NAMES[shape]]), where=pick(where_phrases(cell)))


def is_held_out(shape, colour, size) -> np.ndarray:
    """bool [N]: which (shape, colour, size) index triples belong to a HELD_OUT_COMBOS combination."""
    names = {"shape": SHAPE_NAMES, "colour": COLOUR_NAMES, "size": SIZE_NAMES}
    values = {"shape": np.asarray(shape), "colour": np.asarray(colour), "size": np.asarray(size)}
    out = np.zeros(len(values["shape"]), bool)
    for combo in HELD_OUT_COMBOS:
        out |= np.all([values[k] == names[k].index(v) for k, v in combo.items()], axis=0)
    return out


def shapes_captions(attributes: dict, image_size: int, *, seed: int = 0):
    """(captions: list[str], choices int [N, VARIANTS] into captions, keep bool [N]) of shapes images: each image
    may be captioned by any of its combination's VARIANTS training captions; held-out combinations are not kept."""
    cells = position_cells(attributes["x"], attributes["y"], attributes["size"], image_size)
    combo = ((attributes["shape"] * len(COLOUR_NAMES) + attributes["colour"]) * len(SIZE_NAMES)
             + attributes["size"]) * 10 + (cells + 1)  # position 0 = not stated
    used, inverse = np.unique(combo, return_inverse=True)
    captions = []
    for c in used.tolist():
        rest, cell = divmod(c, 10)
        rest, size = divmod(rest, len(SIZE_NAMES))
        shape, colour = divmod(rest, len(COLOUR_NAMES))
        rng = np.random.default_rng([seed, c])
        captions += [shape_caption(rng, TRAIN_TEMPLATES, shape, colour, size, cell - 1) for _ in range(VARIANTS)]
    choices = inverse.reshape(-1, 1) * VARIANTS + np.arange(VARIANTS)
    keep = ~is_held_out(attributes["shape"], attributes["colour"], attributes["size"])
    return captions, choices.astype(np.int64), keep


def digit_caption(template: str, digit: int) -> str:
    return fill(template, word=DIGIT_WORDS[digit], n=str(digit))


def digits_captions(labels: np.ndarray):
    """(captions, choices [N, len(DIGIT_TEMPLATES)], keep) of digit images from their labels."""
    captions = [digit_caption(t, d) for d in range(10) for t in DIGIT_TEMPLATES]
    k = len(DIGIT_TEMPLATES)
    choices = np.asarray(labels).reshape(-1, 1) * k + np.arange(k)
    return captions, choices.astype(np.int64), np.ones(len(labels), bool)


# --- reading a prompt back ----------------------------------------------------------------------------

def _words(prompt: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", prompt.lower())


def _lookup(words, table: dict) -> int | None:
    for i, (_, synonyms) in enumerate(table.items()):
        if any(s in words for s in synonyms):
            return i
    return None


def shape_prompt_attributes(prompt: str) -> dict:
    """The attributes a prompt asks for, as indices ({"shape", "colour", "size", "position"}; an attribute
    the prompt does not mention is left out): the inverse of the caption grammar, synonyms included."""
    words = _words(prompt)
    out = {}
    for name, table in (("shape", SHAPE_WORDS), ("size", SIZE_WORDS)):
        found = _lookup(words, table)
        if found is not None:
            out[name] = found
    colours = [i for i, c in enumerate(COLOUR_NAMES) if c in words]
    if colours:
        out["colour"] = colours[0]
    row = 0 if {"top", "upper"} & set(words) else 2 if {"bottom", "lower"} & set(words) else None
    col = 0 if "left" in words else 2 if "right" in words else None
    if row is not None or col is not None or {"centre", "center", "middle"} & set(words):
        out["position"] = (1 if row is None else row) * 3 + (1 if col is None else col)
    return out


def digit_prompt_class(prompt: str) -> int | None:
    """The digit a prompt names ("seven" or "7"), or None."""
    for w in _words(prompt):
        if w in DIGIT_WORDS:
            return DIGIT_WORDS.index(w)
        if len(w) == 1 and w.isdigit():
            return int(w)
    return None
