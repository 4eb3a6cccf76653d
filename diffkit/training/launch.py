"""`diffkit train --nproc N`: the same command in N processes on this machine, started by torch's own launcher
(what `torchrun --standalone --nproc-per-node N -m diffkit train ...` does), and a failed rank reported in
one sentence that names it.
"""

from __future__ import annotations

import os
import signal
import tempfile

from ..errors import ConfigError, RankFailed
from .distributed import PEER_LOST

# how often the launcher polls its processes (seconds): a dead rank is noticed this fast and the others ended
MONITOR_S = 0.5


def launch(nproc: int, argv: list[str], out: str) -> None:
    """Run `python -m diffkit *argv` as nproc ranks; returns when all of them finished, raises RankFailed
    naming the rank that failed first otherwise (the launcher then ends the others)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if nproc < 1:
        raise ConfigError(f"--nproc must be a positive number of processes, got {nproc}")
    # threads per rank: this machine's cores shared out (torchrun would set 1 and warn about it)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # torch's launcher installs its own handlers for these (to stop its workers) and leaves them changed:
    # put back what the caller had (a library call must not leave Ctrl-C ignored)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    # torch's launcher keeps a folder per job for its ranks' logs and never removes it (one torchelastic_* folder
    # in the temporary directory per job): give it one that goes when the job ends
    with tempfile.TemporaryDirectory(prefix="diffkit-ranks-") as logs:
        args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", f"--monitor-interval={MONITOR_S}",
                                    f"--log-dir={logs}", "-m", "diffkit", *argv])
        try:
            torchrun.run(args)
        except ChildFailedError as e:
            raise RankFailed(describe_failures(e.failures, out)) from None
        finally:
            for s, handler in before.items():
                if handler is not None:
                    signal.signal(s, handler)


def _what(failure) -> str:
    if failure.exitcode is not None and failure.exitcode < 0:
        try:
            name = signal.Signals(-failure.exitcode).name
        except ValueError:
            name = f"signal {-failure.exitcode}"
        return f"was killed by {name}"
    if failure.exitcode == PEER_LOST:
        return "lost contact with another rank"
    return f"exited with status {failure.exitcode}"


def describe_failures(failures: dict, out: str) -> str:
    """One sentence: the failed rank(s) that caused the stop (not the ones that only lost their peer or were
    ended by the launcher), what happened to them, and what is left of the run."""
    def victim(f) -> bool:
        return f.exitcode in (PEER_LOST, -signal.SIGTERM)

    causes = {r: f for r, f in failures.items() if not victim(f)} or failures
    parts = [f"rank {r} (pid {f.pid}) {_what(f)}" for r, f in sorted(causes.items())]
    return (f"{'; '.join(parts)}, so the job stopped and the other ranks were ended; the last checkpoint in {out} "
            f"is intact: continue with --resume (with any number of processes)")
