"""The examples run as programs: each starts, does its work, and stops cleanly on a signal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from helpers import EXAMPLE_WAIT, Example


def test_quickstart_shows_status_and_stops_by_itself_after_about_three_seconds() -> None:
    with Example("quickstart.py") as demo:
        code = demo.wait(EXAMPLE_WAIT * 2)
    assert code == 0, demo.errors
    output = demo.output
    assert "--- status after 3s ---" in output
    assert "shutdown (demo over after 3 seconds)" in output
    assert ": ok" in output
    assert re.search(r"^\s*heartbeat\s+stopped\s+-$", output, re.MULTILINE), output
    assert demo.errors == ""


def test_quickstart_stops_early_on_ctrl_c() -> None:
    with Example("quickstart.py") as demo:
        demo.expect("running for about 3 seconds")
        demo.send(signal.SIGINT)
        code = demo.wait()
    assert code == 0, demo.errors
    assert "shutdown (received SIGINT)" in demo.output
    assert "Traceback" not in demo.errors


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_hello_routine_says_hello_then_done_on_a_signal(signum: int) -> None:
    with Example("hello_routine.py") as hello:
        hello.expect("Hello there!")
        hello.send(signum)
        code = hello.wait()
    assert code == 0, hello.errors
    lines = hello.output.splitlines()
    assert lines[1] == "Hello there!"
    assert "done!" in lines
    assert f"shutdown (received {signal.Signals(signum).name})" in hello.output
    assert hello.errors == ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_legacy_http_server_serves_then_stops_server_and_poller(signum: int) -> None:
    with Example("legacy_http_server.py") as server:
        line = server.expect("serving on http://")
        url = line.split("serving on ", 1)[1].strip()
        server.expect("poller: checked for work (1)")
        with urllib.request.urlopen(url, timeout=EXAMPLE_WAIT) as response:
            assert response.read() == b"hello from a legacy server\n"
        server.send(signum)
        code = server.wait()
    assert code == 0, server.errors
    output = server.output
    assert "poller: stopped" in output
    assert re.search(r"^\s*http\s+stopped\s+-$", output, re.MULTILINE), output
    assert re.search(r"^\s*poller\s+stopped\s+-$", output, re.MULTILINE), output
    assert "Traceback" not in server.errors


# -- the docs show the code the tests run (issue 25.14) ----------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def python_block_after(document: Path, heading: str) -> str:
    """The first ```python block after `heading` in `document`."""
    text = document.read_text()
    assert heading in text, f"{document.name} has no heading {heading!r}"
    block = re.search(r"```python\n(.*?)```", text[text.index(heading) :], re.DOTALL)
    assert block is not None, f"no python block after {heading!r} in {document.name}"
    return block.group(1)


@pytest.mark.parametrize(
    ("document", "heading", "example"),
    [
        ("docs/embedding.md", "## gunicorn", "examples/hosts/gunicorn_hooks.py"),
        ("docs/fleet.md", "## gunicorn: a schedule once", "examples/hosts/gunicorn_fleet.py"),
    ],
)
def test_a_recipe_in_the_docs_is_the_code_of_the_example_its_test_runs(
    document: str, heading: str, example: str
) -> None:
    block = python_block_after(ROOT / document, heading)
    assert block in (ROOT / example).read_text(), f"{document} shows code {example} does not have"


# A submodule that `import routines` does not load, reached as an attribute of the package, is
# an AttributeError: `routines.prometheus.MonitorCollector(monitor)` was in the README.
# (The durable tier's loggers, `routines.durable.worker` and its siblings, are names, not this.)
THROUGH_THE_PACKAGE = re.compile(
    r"\broutines\.(testing|prometheus|durable)\.(?!(worker|lease|migrations|scheduled)\b)[A-Za-z_]"
)


def test_the_readme_and_docs_reach_a_submodule_only_through_its_import() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import routines; print(hasattr(routines, 'prometheus'))"],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_WAIT,
        check=True,
    )
    assert loaded.stdout.strip() == "False"  # so the rule below is needed
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if THROUGH_THE_PACKAGE.search(line)
    ]
    assert found == [], "write these as `from routines.<submodule> import ...`:\n" + "\n".join(
        found
    )
