"""diffkit's command line: `diffkit.cli:main` (the `diffkit` script through `main.entry`, `python -m diffkit`,
`python -m diffkit.cli`).

main.py dispatches; args.py is the parser; one module per command family (train, sample, eval, score, text,
demo, lab) and common.py for what they share."""

from .main import main

__all__ = ["main"]
