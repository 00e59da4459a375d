"""What the processes of one host that share a SQLite file keep beside it: liveness marks and
doorbells, in the directory `<database>.routines/` (its real path, symbolic links resolved).

- `live/<key>`: a process's liveness mark, a small file it holds an exclusive `flock` on. The
  kernel releases an `flock` when the last descriptor of its open file closes, which a killed
  process's exit does; so a sweeper that can take the lock, or finds no file, knows that the
  mark's process is gone. A mark is made under a temporary name, locked, then renamed into
  place, so that no sweeper ever sees it unlocked while its process lives; it is removed by its
  process when it stops, after its workers have written their jobs, or by the sweeper that
  found it free. A child forked without `exec` shares the lock (the descriptor is inherited),
  and keeps the mark held while it lives: then heartbeats alone tell.
- `bell/<queue>.<random>`: an idle worker's doorbell, a Unix datagram socket bound to
  that name; an enqueue sends a byte to each socket of its queue after its commit. A socket
  nobody listens on any more (its process was killed) refuses the byte and is removed. The
  queue part is a hash of the schema and the queue's name, so names of any length and
  characters fit (two queues whose hashes meet only wake each other's workers for nothing). A
  socket's address is at most about 100 bytes (104 on macOS): if the
  database's path is too long for one, the doorbells live in the temporary directory instead,
  in a directory named by a hash of the database's path (so every process that shares the
  database must then share its TMPDIR too, or it polls).

Neither is needed for correctness: a mark that can't be made leaves heartbeats to tell, and a
doorbell missed leaves the poll, which stays as the floor.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import select
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Final

from typing_extensions import final

from .._flag import Flag, wait_any
from .._status import describe_error
from ._model import mark_key, marked_holder_id

__all__ = ["FileMark", "HostDirectory", "SocketDoorbell"]

logger = logging.getLogger("routines.durable")

_CHECK_EVERY: Final = 1.0  # how often a mark makes sure its file is still its own
# The longest socket address: sun_path is 104 bytes on macOS (108 on Linux), its NUL included.
_SOCKET_PATH_MAX: Final = (104 if sys.platform == "darwin" else 108) - 1
_QUEUE_DIGEST: Final = 5  # bytes of a queue's hash in a doorbell's name (10 hex digits)
_BELL_RANDOM: Final = 4  # bytes of a doorbell's random part (8 hex digits)
_BELL_NAME_MAX: Final = 2 * _QUEUE_DIGEST + 1 + 2 * _BELL_RANDOM  # <queue>.<random>
_BIND_TRIES: Final = 3  # a bell directory removed (emptied) by another process meanwhile
_STAGING: Final = "."  # a mark being made: locked, then renamed into place
_STAGING_STALE: Final = 60.0  # seconds after which a mark still being made was abandoned


@final
class HostDirectory:
    """The places beside the SQLite file `path` (absolute) that its processes share."""

    def __init__(self, path: str, schema: str) -> None:
        real = os.path.realpath(path)
        self.root = real + ".routines"
        self.live = os.path.join(self.root, "live")
        self._schema = schema
        self.bell = _bell_directory(real, os.path.join(self.root, "bell"))
        self._sender: socket.socket | None = None
        self._lock = threading.Lock()
        # The doorbells of this store's workers: its enqueues wake those in-process instead.
        self.own: set[str] = set()

    def __repr__(self) -> str:
        return f"HostDirectory({self.root!r})"

    # -- liveness marks -----------------------------------------------------------------------

    def mark_path(self, worker: str) -> str:
        return os.path.join(self.live, f"{mark_key(worker) & (2**64 - 1):016x}")

    def free_marks(self, workers: Sequence[str]) -> list[str]:
        """Those of `workers` whose mark's file is gone or unlocked; a free one is removed."""
        return [worker for worker in workers if _mark_free(self.mark_path(worker))]

    # -- doorbells ------------------------------------------------------------------------------

    def queue_part(self, queue: str) -> str:
        key = f"{self._schema}\0{queue}".encode()
        return hashlib.blake2b(key, digest_size=_QUEUE_DIGEST).hexdigest()

    def ring(self, queue: str) -> None:
        """A byte to each doorbell of `queue`; never raises, never blocks."""
        directory = self.bell
        if directory is None:
            return
        prefix = self.queue_part(queue) + "."
        try:
            with os.scandir(directory) as entries:
                names = [
                    entry.name
                    for entry in entries
                    if entry.name.startswith(prefix) and entry.name not in self.own
                ]
        except OSError:
            return  # no worker has bound a doorbell here yet
        if not names:
            return
        sender = self._sending_socket()
        if sender is None:
            return
        for name in names:
            address = os.path.join(directory, name)
            try:
                sender.sendto(b"\0", address)
            except ConnectionRefusedError:  # nobody listens there now: its process is gone
                with contextlib.suppress(OSError):
                    os.unlink(address)
            except OSError as error:  # full (it is rung already), gone meanwhile, not ours
                if error.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.ENOENT, errno.EACCES):
                    logger.debug("ringing the doorbell %s: %s", address, describe_error(error))

    def _sending_socket(self) -> socket.socket | None:
        with self._lock:
            if self._sender is None:
                try:
                    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                except OSError as error:
                    logger.debug("no socket to ring doorbells with: %s", describe_error(error))
                    return None
                sender.setblocking(False)  # an enqueue never waits for a worker
                self._sender = sender
            return self._sender

    def close(self) -> None:
        with self._lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()


def _bell_directory(database: str, beside: str) -> str | None:
    """Where the doorbells of `database` are bound: beside it if the addresses fit there, else
    in the temporary directory; None if they fit nowhere."""
    if _fits(beside):
        return beside
    digest = hashlib.blake2b(os.fsencode(database), digest_size=6).hexdigest()
    try:
        elsewhere = os.path.join(tempfile.gettempdir(), f"rt-{digest}")
    except OSError:  # no usable temporary directory
        return None
    return elsewhere if _fits(elsewhere) else None


def _fits(directory: str) -> bool:
    return len(os.fsencode(directory)) + 1 + _BELL_NAME_MAX <= _SOCKET_PATH_MAX


def _mark_free(path: str) -> bool:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # removed when its process stopped, or by a sweeper that found it free
    except OSError:
        return False  # can't tell (another user's, say): heartbeats will
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its process holds it
        with contextlib.suppress(OSError):
            if _same_file(descriptor, path):
                os.unlink(path)
        return True
    finally:
        os.close(descriptor)


def _same_file(descriptor: int, path: str) -> bool:
    held, there = os.fstat(descriptor), os.stat(path)
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


@final
class FileMark:
    """This process's liveness mark beside a SQLite file: an `flock` on `live/<key>`."""

    def __init__(self, directory: HostDirectory) -> None:
        self._directory = directory
        self.worker_id = marked_holder_id()
        self._path = directory.mark_path(self.worker_id)
        self._descriptor: int | None = None
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._warned = False
        self._made = Flag()  # held at least once
        with self._lock:
            self._keep()
        _remove_stale_marks(directory.live, keep=self._path)

    def __repr__(self) -> str:
        return f"FileMark({self._path!r})"

    def held(self) -> bool:
        if time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._keep()
            finally:
                self._lock.release()
        return self._descriptor is not None

    def wait(self, timeout: float, stop: Flag) -> bool:  # made when it was created, or not
        return self.held()

    def close(self) -> None:
        with self._lock:
            descriptor, self._descriptor = self._descriptor, None
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    if _same_file(descriptor, self._path):
                        os.unlink(self._path)  # before the lock goes: never there unlocked
                os.close(descriptor)

    def _keep(self) -> None:
        """Make sure the file is still this mark's, and make it again if it is not."""
        self._next_check = time.monotonic() + _CHECK_EVERY
        descriptor = self._descriptor
        if descriptor is not None:
            try:
                if _same_file(descriptor, self._path):
                    return
            except OSError:
                pass
            logger.warning(
                "the liveness mark %s of this process was removed while it lives: other "
                "workers may put back its running jobs (their outcomes here are then refused "
                "by the claim token); making it again",
                self._path,
            )
            self._descriptor = None
            os.close(descriptor)
        try:
            self._descriptor = _make_mark(self._directory.live, self._path, self.worker_id)
        except OSError as error:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "no liveness mark for this process beside the SQLite store (%s): its "
                    "jobs are judged by their heartbeats alone",
                    describe_error(error),
                )
            return
        if self._made.is_set():
            logger.info("the liveness mark %s of this process is made again", self._path)
        self._made.set()


def _make_mark(directory: str, path: str, worker: str) -> int:
    """A locked file at `path`, made under another name and renamed into place."""
    os.makedirs(directory, exist_ok=True)
    staging = os.path.join(directory, f"{_STAGING}{secrets.token_hex(8)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(descriptor, f"{worker}\n".encode())
        os.rename(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        os.close(descriptor)
        raise
    return descriptor


def _remove_stale_marks(directory: str, *, keep: str) -> None:
    """Remove the marks of processes that died without jobs (no sweep ever tests those)."""
    try:
        with os.scandir(directory) as entries:
            paths = [entry.path for entry in entries if entry.path != keep and _stale(entry)]
    except OSError:
        return
    for path in paths:
        _mark_free(path)


def _stale(entry: os.DirEntry[str]) -> bool:
    """A mark, or a mark being made whose maker must have died (it is renamed at once)."""
    if not entry.name.startswith(_STAGING):
        return True
    with contextlib.suppress(OSError):
        return time.time() - entry.stat().st_mtime > _STAGING_STALE
    return False


@final
class SocketDoorbell:
    """A worker's doorbell: a Unix datagram socket bound in the bell directory, for one queue.
    Closed (as a listener is after an outage), it binds again at its next wait."""

    def __init__(self, host: HostDirectory, directory: str, queue: str) -> None:
        self._host = host
        self._directory = directory
        self._queue = queue
        self._name = f"{host.queue_part(queue)}.{secrets.token_hex(_BELL_RANDOM)}"
        self._address = os.path.join(directory, self._name)
        self._socket: socket.socket | None = _bound(directory, self._address)
        host.own.add(self._name)
        self._pause = Flag()  # never set: the wait of a doorbell that can't bind
        self._warned = False

    def __repr__(self) -> str:
        return f"SocketDoorbell({self._address!r})"

    def wait(self, timeout: float) -> set[str]:
        sock = self._socket or self._bind_again()
        if sock is None:
            wait_any((self._pause,), timeout)
            return set()
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            if not poller.poll(max(0, round(timeout * 1000))):
                return set()
            while True:  # every byte rung so far: one wake-up for them all
                try:
                    sock.recv(64)
                except BlockingIOError:
                    break
        except OSError as error:  # something stranger than a ring: bound again next time
            self._warn(f"stopped working ({describe_error(error)})")
            self.close()
            return set()
        return {self._queue}

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is None:
            return
        self._host.own.discard(self._name)
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self._address)
        with contextlib.suppress(OSError):
            os.rmdir(self._directory)  # only once it is empty

    def _bind_again(self) -> socket.socket | None:
        try:
            self._socket = _bound(self._directory, self._address)
            self._host.own.add(self._name)
        except OSError as error:
            self._warn(f"can't be bound ({describe_error(error)})")
        return self._socket

    def _warn(self, what: str) -> None:
        if not self._warned:  # once: the poll carries on meanwhile, as it always can
            self._warned = True
            logger.warning("the doorbell %s %s: the worker polls", self._address, what)


def _bound(directory: str, address: str) -> socket.socket:
    """A non-blocking datagram socket bound to `address`, its directory made if need be."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for _ in range(_BIND_TRIES - 1):
            os.makedirs(directory, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # removed, empty, by another process
                sock.bind(address)
                return sock
        os.makedirs(directory, exist_ok=True)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
