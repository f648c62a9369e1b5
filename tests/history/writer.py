"""A second process writing to a store (for the concurrency and interrupted-write tests): ``python writer.py URL
FIRST COUNT [kill-at]`` records nights FIRST..FIRST+COUNT-1; with kill-at, the process kills itself (SIGKILL)
in the middle of that night's transaction, after its run row and before its values."""

from __future__ import annotations

import os
import signal
import sys

from history_support import run_results

from perfgate.history.store import HistoryStore

if __name__ == "__main__":
    url, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else None
    store = HistoryStore.open(url)
    for night in range(first, first + count):
        if night == kill_at:
            store._insert_values = lambda conn, values: os.kill(os.getpid(), signal.SIGKILL)  # type: ignore[method-assign]
        store.record_run(run_results(night, test_id=f"case-{first}"), "ok")
    print("done", flush=True)
