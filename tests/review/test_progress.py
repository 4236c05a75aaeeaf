"""Progress bars of `review push` and `review pull` against the real Label Studio: shown on stderr
when asked (or when stderr is a terminal), nothing at all otherwise; stdout stays for reports."""

from __future__ import annotations

import pytest

from risbench_builder.review import LabelStudio, pull, push
from risbench_builder.review.sync import load_state
from tests.review.test_review_server import answer, make_users, proposal

pytestmark = pytest.mark.labelstudio


def test_push_and_pull_show_bars_on_stderr_when_asked(review_workspace, label_studio,
                                                      capsys: pytest.CaptureFixture) -> None:
    ws = review_workspace(annotators_per_task=1, batch_size=3, page_size=4)       # several batches and pages
    pushed = push(ws, progress=True)
    out = capsys.readouterr()
    n = pushed.imported
    assert n > 3 and out.out == ""
    assert "review push" in out.err and f"{n}/{n} tasks imported" in out.err

    ls = LabelStudio(label_studio.url, label_studio.token)
    (uid, _), = make_users(ls, "a").values()
    for tid, task in load_state(ws)["tasks"].items():
        ls.create_annotation(task, answer("accept", proposal(ws, tid)), completed_by=uid)
    pulled = pull(ws, progress=True)
    out = capsys.readouterr()
    assert sum(pulled.decisions.values()) == n
    assert out.out == "" and "review pull" in out.err and f"{n}/{n} tasks read, {n} decided" in out.err


def test_no_bars_when_stderr_is_not_a_terminal(review_workspace, capsys: pytest.CaptureFixture) -> None:
    ws = review_workspace(annotators_per_task=1)
    push(ws)                                              # progress=None: stderr is captured here, not a terminal
    pull(ws)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
