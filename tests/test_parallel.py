"""Process pools: Ctrl-C is the parent's to handle, so workers neither die nor print tracebacks."""

from __future__ import annotations

import os
import signal
import time

from risbench_builder.parallel import make_pool, ordered_map


def _pid(_: int) -> int:
    time.sleep(0.02)                      # long enough that both workers take part
    return os.getpid()


def _mark(value: str) -> None:
    os.environ["RISBENCH_TEST_INIT"] = value


def _marked(_: int) -> str | None:
    return os.environ.get("RISBENCH_TEST_INIT")


def test_workers_leave_sigint_to_the_parent_and_run_the_initializer() -> None:
    pool = make_pool(2, initializer=_mark, initargs=("yes",))
    try:
        before = set(ordered_map(_pid, range(20), pool))
        assert len(before) == 2
        for pid in before:                # what a terminal's Ctrl-C sends to every process of the group
            os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        after = set(ordered_map(_pid, range(20), pool))
        assert after == before            # the same two workers, alive (a dead one would be replaced)
        assert set(ordered_map(_marked, range(4), pool)) == {"yes"}      # the caller's initializer ran too
    finally:
        pool.terminate()
        pool.join()
