"""Progress bars of `review push` and `review pull`, offline against a stand-in server: shown on
stderr when asked (or when stderr is a terminal), nothing at all otherwise."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from risbench_builder.review import pull, push
from tests.review.test_import_file import refined  # noqa: F401  (fixture: a refined workspace with a queue)


class StandIn:
    """Just what push and pull ask of Label Studio; imported tasks get one accepting answer."""

    url = "http://127.0.0.1:8080"

    def __init__(self) -> None:
        self.tasks: list[dict] = []
        self.batches: list[int] = []

    def whoami(self) -> dict:
        return {"id": 1}

    def users(self) -> dict[int, str]:
        return {1: "a@x.org"}

    def project(self, project_id: int) -> dict | None:
        return {"id": project_id}

    def find_project(self, title: str) -> dict | None:
        return None

    def create_project(self, title: str, label_config: str, **_: Any) -> dict:
        return {"id": 1}

    def local_storages(self, project_id: int) -> list[dict]:
        return []

    def create_local_storage(self, project_id: int, path: str, title: str) -> dict:
        return {"id": 1}

    def status_of(self, path: str) -> int:
        return 200

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        self.batches.append(len(tasks))
        start = len(self.tasks)
        for i, task in enumerate(tasks):
            region = task["predictions"][0]["result"][0]
            answer = [{"from_name": "verdict", "to_name": "image", "type": "choices",
                       "value": {"choices": ["accept"]}}, region]
            self.tasks.append({"id": start + i + 1, "data": task["data"],
                               "annotations": [{"id": start + i + 1, "completed_by": 1, "result": answer}]})
        return [t["id"] for t in self.tasks[start:]]

    def task_pages(self, project_id: int, *, annotations: bool, page_size: int = 100) -> Iterator[tuple[int, list]]:
        for start in range(0, len(self.tasks), page_size):
            yield len(self.tasks), self.tasks[start:start + page_size]


def _small_batches(ws):
    """One reviewer per task, imports of 3 tasks, pages of 4: several of each."""
    cfg = ws.load()
    review = cfg.review.model_copy(update={"annotators_per_task": 1, "batch_size": 3, "page_size": 4})
    return cfg.model_copy(update={"review": review})


def test_push_and_pull_show_bars_on_stderr_when_asked(refined, capsys: pytest.CaptureFixture) -> None:
    server, cfg = StandIn(), _small_batches(refined)
    pushed = push(refined, cfg, client=server, progress=True)
    out = capsys.readouterr()
    n = pushed.imported
    assert n > 3 and server.batches[0] == 3 and sum(server.batches) == n
    assert out.out == ""                                             # stdout stays for reports
    assert "review push" in out.err and f"{n}/{n} tasks imported" in out.err

    pulled = pull(refined, cfg, client=server, progress=True)
    out = capsys.readouterr()
    decided = sum(pulled.decisions.values())
    assert decided == n
    assert out.out == "" and "review pull" in out.err and f"{n}/{n} tasks read, {n} decided" in out.err


def test_no_bars_when_stderr_is_not_a_terminal(refined, capsys: pytest.CaptureFixture) -> None:
    server, cfg = StandIn(), _small_batches(refined)
    push(refined, cfg, client=server)                                # progress=None: stderr is captured here
    pull(refined, cfg, client=server)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
