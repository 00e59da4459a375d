"""Figure 8's `routines` side (processing N trivial jobs, 4 handlers, no limits) on this
checkout and on an earlier commit, side by side: has a change slowed the path it did not mean
to touch? Issue 29 asked this of flow control, whose claim every worker now goes through.

The commit is checked out into a temporary git worktree (removed after). Each trial runs in a
new process whose `routines` is that tree's (checked: the child fails if it imports another),
with this checkout's benchmark helpers; the two trees alternate, `--rounds` times per backend,
after one unrecorded warm-up each. Medians are printed, and the ratio this checkout / commit.

    .venv/bin/python benchmarks/against_commit.py 48db5ff [--jobs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _durable import postgres_missing

BENCHMARKS = Path(__file__).resolve().parent
CHECKOUT = BENCHMARKS.parent
# The child: figure 8's routines side, on the `routines` of the tree first on sys.path.
CHILD = """
import json, sys
tree, backend, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import routines
if not routines.__file__.startswith(tree):
    raise SystemExit(f"imported routines from {routines.__file__}, not from {tree}")
import fig8_process
print(json.dumps(fig8_process.routines(backend, n)["throughput"]))
"""


def trial(tree: Path, backend: str, n: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(BENCHMARKS)])}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), backend, str(n)],
        env=env,
        cwd=tree,  # `python -c` puts its directory first on sys.path
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        msg = f"a trial on {tree} ({backend}) failed:\n{done.stderr}"
        raise RuntimeError(msg)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the earlier commit to compare with")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    backends = ["sqlite"] + ([] if postgres_missing() else ["postgres"])
    with tempfile.TemporaryDirectory(prefix="routines-commit-") as parent:
        earlier = Path(parent) / "tree"
        subprocess.run(
            ["git", "-C", str(CHECKOUT), "worktree", "add", "--detach", str(earlier), args.commit],
            check=True,
            capture_output=True,
        )
        try:
            trees = {"this checkout": CHECKOUT, args.commit: earlier}
            for backend in backends:
                rates: dict[str, list[float]] = {name: [] for name in trees}
                for round_ in range(args.rounds + 1):
                    for name, tree in trees.items():
                        rate = trial(tree, backend, args.jobs)
                        if round_:  # the first round warms up
                            rates[name].append(rate)
                medians = {name: statistics.median(values) for name, values in rates.items()}
                for name, values in rates.items():
                    shown = ", ".join(f"{value:,.0f}" for value in values)
                    print(f"{backend:8} {name:14} median {medians[name]:8,.0f}/s  ({shown})")
                ratio = medians["this checkout"] / medians[args.commit]
                print(f"{backend:8} this checkout / {args.commit}: {ratio:.2f}x")
        finally:
            subprocess.run(
                ["git", "-C", str(CHECKOUT), "worktree", "remove", "--force", str(earlier)],
                check=True,
                capture_output=True,
            )


if __name__ == "__main__":
    main()
