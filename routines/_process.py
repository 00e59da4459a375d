"""The process a routine was started in: threads don't survive `fork()`, so a routine started
in a parent (a gunicorn master with `--preload`, say) runs nowhere in the forked child."""

from __future__ import annotations

import os

from typing_extensions import final

__all__ = ["StartedIn"]

# This process's id, kept up to date by a fork hook: forked() runs on every pool submit, and
# os.getpid() is a system call.
_pid = os.getpid()


def _forked_into_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked_into_child)


@final
class StartedIn:
    """Where something that runs threads was started: `forked()` in a child forked since."""

    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid: int | None = None

    def mark(self) -> None:
        """It starts now, in this process."""
        self.pid = _pid

    def forked(self) -> bool:
        """True in a process forked after it was started: none of its threads run here."""
        return self.pid is not None and self.pid != _pid

    def message(self, what: str) -> str:
        """Why `what` does not run in this process, and what to do instead."""
        return (
            f"{what} was started in process {self.pid}, and this process ({os.getpid()}) was "
            "forked from it afterwards: its threads do not run here. Start it after the fork, "
            "in the process that uses it (gunicorn: in the post_worker_init hook, not at "
            "import time with --preload)"
        )
