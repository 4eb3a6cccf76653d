"""The command line's entry point: parse, dispatch to the command's module, map errors to exit codes.

Bad input -> `error: <one sentence>` on stderr, exit 2. A bug -> traceback, exit 1.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import DiffkitError
from .args import build_parser

# command -> (module of diffkit.cli, function); a command's module is imported only when it runs
COMMANDS = {"train": ("train", "cmd_train"), "train-vae": ("train", "cmd_train_vae"), "sample": ("sample", "cmd_sample"),
            "eval": ("eval", "cmd_eval"), "demo": ("demo", "cmd_demo"), "lab": ("lab", "cmd_lab"),
            "reflow": ("derived", "cmd_reflow"), "distill": ("derived", "cmd_distill"),
            "import": ("interop", "cmd_import"), "export": ("interop", "cmd_export"), "edit": ("edit", "cmd_edit"),
            "invert": ("edit", "cmd_invert"), "interpolate": ("edit", "cmd_interpolate"),
            "finetune": ("derived", "cmd_finetune"), "merge": ("derived", "cmd_merge")}


def run_command(args) -> None:
    module, function = COMMANDS[args.command]
    getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)


def main(argv=None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # diffkit train --nproc hands it to the ranks
        run_command(args)
    except DiffkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except OSError as e:  # the machine refused a file operation (read-only folder, disk full, ...): not a bug
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where} ({e.strerror or e}); check the path and its permissions or free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return 130
    return 0


def exit_with(code: int | None) -> None:
    """End the process with `code`. A rank of a multi-process job (WORLD_SIZE > 1: torchrun, `diffkit train
    --nproc`) has finished its work and left its process group by now; it ends without the interpreter's
    teardown (os._exit after flushing), because tearing down torch's gloo state there aborts a rank now and
    then ("terminate called without an active exception", SIGABRT, seen about once in 50 jobs on a busy
    2-core machine), which would report a finished job as failed. None is 0, as for sys.exit."""
    import os

    try:
        rank_of_a_job = int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:  # not a number: training.distributed.env_world refused it by name already
        rank_of_a_job = False
    if rank_of_a_job:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if code is None else code)
    sys.exit(code)


def entry() -> None:
    """The installed `diffkit` command (pyproject.toml's script), as `python -m diffkit`."""
    exit_with(main())
