"""Signal storms: hundreds of SIGTERM and SIGINT in quick succession shut a program down once,
with no traceback and the exit code its report gives; a signal that arrives while routines are
still starting is handled too.

The program under test is tests/programs/storm.py. It ignores SIGINT and SIGTERM before it
calls `Monitor.run()`, the documented idiom: `run()` handles them while it runs and, as it must,
gives back the handlers it found when it returns, so signals that arrive while the program
prints its report and exits are ignored instead of raising KeyboardInterrupt or killing it.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from pathlib import Path

import pytest

import routines

from helpers import WAIT, EventLog, Example, Gate, in_background

STORM = Path(__file__).resolve().parent / "programs" / "storm.py"
WAKEUP_STORM = Path(__file__).resolve().parent / "programs" / "wakeup_storm.py"
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def storm(program: Example, signals: int) -> None:
    """Send `signals` SIGTERM and SIGINT, alternating, as fast as possible."""
    for signum in itertools.islice(itertools.cycle(SHUTDOWN_SIGNALS), signals):
        program.send(signum)


def storm_until_exit(program: Example, limit: float = WAIT) -> int:
    """Send SIGTERM and SIGINT, alternating, until the program has exited; how many were sent."""
    deadline = time.monotonic() + limit
    for sent, signum in enumerate(itertools.cycle(SHUTDOWN_SIGNALS)):
        if program.process.poll() is not None or time.monotonic() > deadline:
            return sent
        program.send(signum)  # does nothing once the exit was noticed
    raise AssertionError("unreachable")


# CPython's own report (PyErr_WriteUnraisable, not an exception the program sees) of a signal
# that reached run()'s handler in the microseconds in which signal.signal() put SIG_IGN back:
# the signal is ignored, as asked. No library code can catch or prevent it (see tests/README.md).
# Its traceback takes many forms (blank lines, caret lines, "Exception ignored in" headers, and
# lines of the program's log interleaved), so the check does not parse tracebacks: it reads the
# lines that name an exception, which start a line and end every traceback.
CPYTHON_RACE = re.compile(r"OSError: Signal \d+ ignored due to race condition")
EXCEPTION_LINE = re.compile(
    r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)\b(?::.*)?$"
)


def unexpected_exceptions(errors: str) -> list[str]:
    """The lines of stderr that end a traceback of anything but CPython's race report."""
    lines = errors.splitlines()
    ends = [line for line in lines if EXCEPTION_LINE.match(line)]
    unexpected = [line for line in ends if not CPYTHON_RACE.fullmatch(line)]
    tracebacks = sum(line.startswith("Traceback (most recent call last)") for line in lines)
    if tracebacks > len(ends) - len(unexpected):
        unexpected.append(f"{tracebacks} tracebacks for {len(ends)} exception lines")
    return unexpected


def test_the_traceback_check_sees_through_every_form_of_the_race_report() -> None:
    race = "OSError: Signal 2 ignored due to race condition"
    forms = [
        f'Traceback (most recent call last):\n  File "x.py", line 1, in f\n\n{race}\n',
        f"Exception ignored in: <function f>\nTraceback (most recent call last):\n"
        f'  File "x.py", line 1\n    y()\n    ^^^\n{race}\n',
        f"Traceback (most recent call last):\nroutine 'worker' abandoned\n  File \"x\"\n{race}\n",
        f"{race}\n",
    ]
    for form in forms:
        assert unexpected_exceptions(form) == [], form
    assert unexpected_exceptions("Traceback (most recent call last):\n  ...\nKeyboardInterrupt\n")
    assert unexpected_exceptions('Traceback (most recent call last):\n  File "x"\n')


def assert_shut_down_once(program: Example, code: int) -> str:
    """One report, the exit code it gives, no traceback; the report's first line."""
    output, errors = program.output, program.errors
    headlines = [line for line in output.splitlines() if line.startswith("shutdown (")]
    assert len(headlines) == 1, output
    assert unexpected_exceptions(errors) == [], errors
    assert code >= 0, f"killed by signal {-code}; stderr:\n{errors}"
    assert code == (0 if headlines[0].endswith(": ok") else 1), output
    assert re.match(r"shutdown \(received SIG(TERM|INT)\)", headlines[0]), headlines[0]
    return headlines[0]


def test_a_burst_of_hundreds_of_signals_shuts_down_once_with_the_reports_exit_code() -> None:
    with Example(str(STORM), "fast") as program:
        program.expect("worker running")
        storm(program, 400)
        code = program.wait()
    assert_shut_down_once(program, code)


def test_signals_sent_until_the_process_is_gone_never_kill_it_or_print_a_traceback() -> None:
    with Example(str(STORM), "fast") as program:
        program.expect("worker running")
        sent = storm_until_exit(program)
        code = program.wait()
    assert sent >= 2
    assert_shut_down_once(program, code)


def test_a_storm_during_a_slow_clean_up_forces_the_end_and_exits_with_one() -> None:
    with Example(str(STORM), "slow") as program:
        program.expect("worker running")
        storm_until_exit(program)
        code = program.wait()
    headline = assert_shut_down_once(program, code)
    assert "forced" in headline
    assert code == 1
    assert re.search(r"^\s*worker\s+abandoned", program.output, re.MULTILINE), program.output


def test_a_signal_while_a_routine_is_still_starting_stops_it_once_it_has_started() -> None:
    with Example(str(STORM), "starting") as program:
        program.expect("starter starting")
        program.send(signal.SIGTERM)
        code = program.wait()
    assert_shut_down_once(program, code)
    assert code == 0
    assert "starter stopped before it ran" in program.output
    assert re.search(r"^\s*starter\s+stopped\s+-$", program.output, re.MULTILINE)


def test_a_storm_while_a_routine_is_still_starting_shuts_down_once() -> None:
    with Example(str(STORM), "starting") as program:
        program.expect("starter starting")
        storm_until_exit(program)
        code = program.wait()
    assert_shut_down_once(program, code)


def test_a_sigint_storm_over_run_after_run_always_gives_the_wakeup_fd_back() -> None:
    # Issue 25.1: a KeyboardInterrupt in the restore left the wakeup fd on the run's socket,
    # which it then closed; every later signal failed to write to it ("Exception ignored when
    # trying to write to the signal wakeup fd"), and a later run's restore raised EBADF.
    with Example(str(WAKEUP_STORM), "2") as program:
        program.expect("ready")
        deadline = time.monotonic() + WAIT + 2
        while program.process.poll() is None and time.monotonic() < deadline:
            program.send(signal.SIGINT)
        code = program.wait()
    summary = program.expect("runs ")
    assert code == 0, program.errors
    assert "faults 0" in summary, program.output
    interrupted = int(re.findall(r"\d+", summary)[1])
    assert interrupted >= 1, summary  # the storm did reach the runs
    assert "wakeup fd" not in program.errors, program.errors
    assert unexpected_exceptions(program.errors) == [], program.errors


# -- in this process: run() in the main thread, signals from a routine while others start ------


@pytest.mark.parametrize("signum", SHUTDOWN_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_sent_by_the_first_routine_while_the_rest_start_stops_them_all(
    signum: int,
) -> None:
    def send_at_once() -> None:
        os.kill(os.getpid(), signum)
        routines.sleep(WAIT)

    gates = [Gate(f"gate-{n}") for n in range(50)]
    report = routines.Monitor(
        routines.CallbackRoutine(send_at_once, name="sender"), *gates, stop_timeout=WAIT
    ).run()
    assert report.signal == signum
    assert report.forced is False
    assert {o.state for o in report.outcomes} == {"stopped"}
    assert report.exit_code == 0


def test_a_burst_of_signals_in_this_process_shuts_down_once() -> None:
    events = EventLog()
    gate = Gate("gate")
    late: list[int] = []

    def send() -> None:
        assert gate.started.wait(WAIT)
        for signum in itertools.islice(itertools.cycle(SHUTDOWN_SIGNALS), 200):
            os.kill(os.getpid(), signum)

    # The same idiom as the program's, with a recorder instead of SIG_IGN: signals that come
    # after run() has returned reach the handlers it found, and change nothing.
    previous = {
        signum: signal.signal(signum, lambda s, f: late.append(s)) for signum in SHUTDOWN_SIGNALS
    }
    try:
        with in_background(send):
            report = routines.Monitor(gate, stop_timeout=WAIT, on_event=events).run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert report.reason in ("received SIGTERM", "received SIGINT")
    assert report.outcomes[0].state in ("stopped", "abandoned")
    assert gate.runs == 1
    assert events.count("gate", "started") == 1
