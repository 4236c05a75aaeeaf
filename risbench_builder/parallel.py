"""Process pools for the CPU-bound parts of a stage, and an ordered map with a bound on what is
in flight (so memory stays flat however many items there are, and results come back in input
order whatever the number of workers)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def main_importable() -> bool:
    """Whether a forkserver child can re-import the parent's ``__main__`` (not so for a script
    piped on stdin: its workers would fail and the pool would respawn them forever)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or path is None or os.path.exists(path)


def make_pool(workers: int, **kwargs: Any) -> Any:
    """A process pool, or None for ``workers < 1`` (the caller then works in-process).

    On Linux with no other Python thread alive it forks (instant, and callers need no
    ``if __name__ == "__main__"`` guard; the workers run numpy / PIL / pycocotools / OpenCV code,
    none of which needs threads from the parent; a child must not reconfigure OpenCV's thread
    pool, e.g. ``cv2.setNumThreads``, which deadlocks on the pool state it inherited). Otherwise
    it uses a forkserver, which is safe with threads but re-imports ``__main__`` (skipped,
    in-process, when that cannot work).
    """
    if workers < 1:
        return None
    caller = (kwargs.pop("initializer", None), kwargs.pop("initargs", ()))
    kwargs.update(initializer=_start_worker, initargs=caller)
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork").Pool(workers, **kwargs)
    if not main_importable():
        return None
    return multiprocessing.get_context("forkserver").Pool(workers, **kwargs)


def _start_worker(initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool: a terminal sends SIGINT to the
    whole process group, and each worker used to print its own KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def default_workers(limit: int = 8) -> int:
    """The cores this process may use, at most ``limit``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, limit))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], pool: Any = None, ahead: int = 4) -> Iterator[R]:
    """``fn(item)`` for each item, in input order; in ``pool`` (a multiprocessing pool) when given,
    with at most ``ahead`` items submitted and not yet taken back."""
    if pool is None:
        for item in items:
            yield fn(item)
        return
    queue: deque = deque()
    for item in items:
        queue.append(pool.apply_async(fn, (item,)))
        if len(queue) >= ahead:
            yield queue.popleft().get()
    while queue:
        yield queue.popleft().get()
