"""A TCP proxy on one thread, to cut a store's connections to PostgreSQL without stopping the
server (which other tests on this machine share)."""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from helpers import WAIT


class TcpProxy:
    """Forwards connections to 127.0.0.1:`port` to `target`. `cut()` closes every connection and
    refuses new ones until `resume()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}  # both directions of each pair
        self._lock = threading.Lock()
        self._forwarding = True
        self._cutting = False
        self._cut_done = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="test-tcp-proxy")

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._stopping = True
        self._wake_writer.send(b"x")
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the proxy thread did not stop"
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            sock.close()
        self._selector.close()

    def cut(self) -> None:
        """Close every forwarded connection and refuse new ones; returns once they are closed."""
        with self._lock:
            self._forwarding = False
            self._cutting = True
            self._cut_done.clear()
        self._wake_writer.send(b"x")
        assert self._cut_done.wait(WAIT), "the proxy did not cut its connections"

    def resume(self) -> None:
        with self._lock:
            self._forwarding = True

    def _run(self) -> None:
        try:
            while True:
                for key, _ in self._selector.select(timeout=1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._wake_reader:
                        sock.recv(64)
                    elif sock is self._listener:
                        self._accept()
                    else:
                        self._forward(sock)
                with self._lock:
                    stopping, cutting = self._stopping, self._cutting
                    self._cutting = False
                if cutting or stopping:
                    for sock in list(self._peers):
                        self._close_pair(sock)
                    self._cut_done.set()
                if stopping:
                    return
        finally:
            for sock in list(self._peers):
                self._close_pair(sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        with self._lock:
            forwarding = self._forwarding
        if not forwarding:
            client.close()
            return
        try:
            server = socket.create_connection(self._target, timeout=WAIT)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.settimeout(WAIT)  # sendall() below: never blocks the proxy for long
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client] = server
        self._peers[server] = client

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        if peer is None:
            return  # closed with its peer already
        del self._peers[peer]
        for one in (sock, peer):
            self._selector.unregister(one)
            one.close()


def proxy_to(url: str) -> TcpProxy:
    """A proxy to the host and port of the PostgreSQL URL `url`."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    return TcpProxy((parts.hostname, parts.port or 5432))


def through(proxy: TcpProxy, url: str) -> str:
    """`url`, its connections going through `proxy`."""
    parts = urlsplit(url)
    address = f"127.0.0.1:{proxy.port}"
    return urlunsplit(
        parts._replace(netloc=f"{parts.username}@{address}" if parts.username else address)
    )
