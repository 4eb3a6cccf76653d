"""Errors a user can cause. Each message is one sentence: what was wrong and what is accepted."""


class DiffkitError(Exception):
    """Bad user input; the CLI prints `error: <message>` and exits 2."""


class DataError(DiffkitError):
    """A data set name or file that cannot be used."""


class ConfigError(DiffkitError):
    """An option or configuration value out of range."""


class CheckpointError(DiffkitError):
    """A run directory or checkpoint that is missing, truncated or foreign."""


class StorageError(DiffkitError):
    """A file or folder that cannot be written (disk full, read-only, not a folder)."""


class TrainingError(DiffkitError):
    """Training that cannot go on (e.g. the loss keeps coming out non-finite)."""


class RankFailed(DiffkitError):
    """A process of a multi-process job failed (killed, crashed, lost its peers); not bad input: exit 1."""

    exit_code = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended training at a step boundary; the message says what was kept."""


def choice_error(what: str, value, choices) -> ConfigError:
    """The standard 'unknown X' error that lists the valid names."""
    names = ", ".join(str(c) for c in choices)
    return ConfigError(f"unknown {what} {value!r}; choose one of: {names}")


def notice(message: str) -> None:
    """A one-line notice on stderr about something diffkit adjusted for the user (not an error)."""
    import sys

    print(f"notice: {message}", file=sys.stderr)
