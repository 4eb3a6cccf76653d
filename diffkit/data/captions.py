"""Captions of a user's image folder: a `captions.csv` in the folder (a header row `file,caption`, then one row
per image, `file` relative to the folder), or a `.txt` file beside each image with the same name (cat.png ->
cat.txt). Every image needs exactly one non-empty caption, and every caption an image.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError

CAPTIONS_CSV = "captions.csv"


def folder_captions(folder, files) -> list[str]:
    """The caption of each file (paths relative to `folder`, in order), from captions.csv or per-image .txt."""
    folder = Path(folder)
    table = folder / CAPTIONS_CSV
    if table.is_file():
        captions = _read_csv(table)
        unknown = sorted(set(captions) - set(files))
        if unknown:
            raise DataError(f"{table} captions {unknown[0]!r}, which is not an image in {folder}; each row names one "
                            "of its images (path relative to the folder)")
    else:
        captions = {}
        for f in files:
            txt = (folder / f).with_suffix(".txt")
            if txt.is_file():
                captions[f] = _decode(txt).strip()
    missing = [f for f in files if not captions.get(f, "").strip()]
    if len(missing) == len(files):
        raise DataError(f"{folder} has no captions; add {CAPTIONS_CSV} (a header row file,caption and one row per "
                        "image) or a .txt file beside each image with the same name (cat.png -> cat.txt)")
    if missing:
        raise DataError(f"{len(missing)} of the {len(files)} images in {folder} have no caption (the first: "
                        f"{missing[0]}); every image needs one, in {CAPTIONS_CSV} or a .txt beside it")
    return [captions[f].strip() for f in files]


def _decode(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save captions as UTF-8") from None


def _read_csv(path: Path) -> dict[str, str]:
    rows = list(csv.reader(_decode(path).splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["file", "caption"]:
        raise DataError(f"{path} must start with the header row file,caption; got {','.join(rows[0]) if rows else 'an empty file'}")
    out = {}
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise DataError(f"{path} line {i} has {len(row)} fields; each row is file,caption (quote captions "
                            "that hold commas)")
        name, caption = row[0].strip(), row[1]
        if name in out:
            raise DataError(f"{path} captions {name} twice (lines {list(out).index(name) + 2} and {i}); give one caption "
                            "per image")
        out[name] = caption
    return out
