"""`python -m diffkit ...` is the `diffkit` command."""

from .cli.main import exit_with, main

exit_with(main())
