"""`python -m diffkit ...` is the `diffkit` command."""

import sys

from .cli import main

sys.exit(main())
