"""`BackgroundRoutine`, the base class for routines written as a `run()` method."""

from __future__ import annotations

import abc

from typing_extensions import final

from ._lifecycle import Lifecycle
from ._validate import check_name, check_optional_seconds

__all__ = ["BackgroundRoutine", "NoopRoutine"]


class BackgroundRoutine(abc.ABC):
    """A routine around one stop flag: subclasses write `run()` and check `wait()`/`stopping`.

    ```python
    class Heartbeat(BackgroundRoutine):
        def run(self) -> None:
            while not self.wait(1.0):  # True as soon as stop() was called
                beat()
    ```

    A subclass that overrides `__init__` calls `super().__init__()`.
    """

    name: str

    def __init__(self, name: str | None = None) -> None:
        self.name = check_name(name) or type(self).__name__
        self._lifecycle = Lifecycle()

    @abc.abstractmethod
    def run(self) -> None:
        """The routine's work; return when `stopping` turns True (or when done)."""

    def start(self) -> None:
        """Run `run()` on the calling thread; return at once if `stop()` was already called."""
        with self._checked_lifecycle().run(self.name) as go:
            if go:
                self.run()

    def stop(self) -> None:
        """Ask `run()` to return soon. Thread-safe, idempotent and quick."""
        self._checked_lifecycle().stop()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called (until the run it stopped has returned)."""
        return self._checked_lifecycle().stopping

    def wait(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: until stopped); True as soon as stop was asked."""
        seconds = check_optional_seconds("timeout", timeout)
        return self._checked_lifecycle().flag.wait(seconds)

    def _checked_lifecycle(self) -> Lifecycle:
        try:
            return self._lifecycle
        except AttributeError:
            msg = f"{type(self).__name__}.__init__ must call super().__init__()"
            raise TypeError(msg) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@final
class NoopRoutine(BackgroundRoutine):
    """Starts, waits for stop, returns. A placeholder, and handy in tests."""

    def __init__(self, name: str = "noop") -> None:
        super().__init__(name)

    def run(self) -> None:
        self.wait(None)
