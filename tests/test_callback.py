from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import routines

from helpers import WAIT, LogWatcher, join, start_in_thread


def serve() -> None:
    pass


class NoContent(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_default_name_is_the_start_callables_qualified_name() -> None:
    assert routines.CallbackRoutine(serve).name == "serve"


def test_name_can_be_given() -> None:
    assert routines.CallbackRoutine(serve, name="http").name == "http"


def test_start_runs_the_start_callable_on_the_calling_thread() -> None:
    threads: list[threading.Thread] = []
    routines.CallbackRoutine(lambda: threads.append(threading.current_thread())).start()
    assert threads == [threading.current_thread()]


def test_stop_before_start_does_not_call_either_callable() -> None:
    calls: list[str] = []
    routine = routines.CallbackRoutine(lambda: calls.append("start"), lambda: calls.append("stop"))
    routine.stop()
    routine.start()
    assert calls == []


def test_stop_calls_the_stop_callback_once_on_a_helper_thread() -> None:
    release = threading.Event()
    entered = threading.Event()
    stop_threads: list[str] = []

    def start() -> None:
        entered.set()
        release.wait(WAIT)

    def stop() -> None:
        stop_threads.append(threading.current_thread().name)
        release.set()

    routine = routines.CallbackRoutine(start, stop, name="svc")
    thread = start_in_thread(routine)
    assert entered.wait(WAIT)
    routine.stop()
    routine.stop()
    join(thread)
    assert stop_threads == ["routine:svc:stop"]


def test_stop_from_the_serving_thread_does_not_deadlock_a_real_server() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    routine = routines.CallbackRoutine(server.serve_forever, server.shutdown, name="http")
    server.service_actions = routine.stop  # type: ignore[method-assign]  # runs on the serving thread
    try:
        thread = start_in_thread(routine)
        join(thread)
    finally:
        server.server_close()


def test_a_real_server_serves_until_stopped() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    routine = routines.CallbackRoutine(server.serve_forever, server.shutdown, name="http")
    try:
        thread = start_in_thread(routine)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            assert response.status == 204
        routine.stop()
        join(thread)
    finally:
        server.server_close()


def test_an_exception_from_the_stop_callback_is_logged() -> None:
    release = threading.Event()
    entered = threading.Event()

    def start() -> None:
        entered.set()
        release.wait(WAIT)

    def stop() -> None:
        release.set()
        raise RuntimeError("cannot stop")

    with LogWatcher() as logs:
        routine = routines.CallbackRoutine(start, stop, name="svc")
        thread = start_in_thread(routine)
        assert entered.wait(WAIT)
        routine.stop()
        join(thread)
        record = logs.wait_for("stop callback raised")
    assert "svc" in record.getMessage()
    assert record.exc_info is not None
    assert "cannot stop" in str(record.exc_info[1])


def test_can_be_started_again_after_a_stop() -> None:
    runs: list[int] = []
    routine = routines.CallbackRoutine(lambda: runs.append(1))
    routine.stop()
    routine.start()  # a stop before the first start applies to it: it returns at once
    routine.start()
    routine.stop()  # the run it was meant for is over: it applies to no later run
    routine.start()
    assert runs == [1, 1]


def test_an_exception_from_the_start_callable_propagates() -> None:
    def start() -> None:
        raise OSError("port in use")

    with pytest.raises(OSError, match="port in use"):
        routines.CallbackRoutine(start).start()
