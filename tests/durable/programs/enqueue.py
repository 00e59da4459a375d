"""A process of the multi-process tests: open a store when told to, then enqueue jobs.

usage: enqueue.py URL SCHEMA QUEUE COUNT [--keyed]

Prints "ready" once imported and waits for a line on stdin, so that the test can start several
at the same moment; then opens the store, enqueues COUNT jobs one call each (with --keyed, job n
has the key "key-<n>"), and prints their ids as one JSON list. Any error ends it with a
traceback on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys

from routines import durable


def main() -> None:
    url, schema, queue_name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    keyed = "--keyed" in sys.argv[5:]
    print("ready", flush=True)
    sys.stdin.readline()
    ids = []
    with durable.open_store(url, schema=schema) as store:
        queue = store.queue(queue_name)
        for n in range(count):
            key = f"key-{n}" if keyed else None
            ids.append(queue.enqueue({"pid": os.getpid(), "n": n}, key=key))
    print(json.dumps(ids), flush=True)


if __name__ == "__main__":
    main()
