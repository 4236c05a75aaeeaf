"""The review loop against a real Label Studio: push, three simulated annotators, pull,
consensus, adjudication, finalize; idempotent push, a server killed during a pull, tokens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import cv2
import numpy as np
import pytest
import yaml

from risbench_builder import masks
from risbench_builder.catalog import Catalog
from risbench_builder.review import LabelStudio, ReviewError, pull, push, review_queue, review_status
from risbench_builder.review.consensus import mean_pairwise_iou
from risbench_builder.review.sync import load_state, state_path
from risbench_builder.review.tasks import brush_result
from risbench_builder.stages.finalize import run_finalize
from risbench_builder.stages.ingest import run_ingest
from risbench_builder.stages.refine import run_refine
from risbench_builder.workspace import Workspace, init_workspace
from tests.review.conftest import TOKEN_ENV, review_pipeline

pytestmark = pytest.mark.labelstudio


# ----------------------------------------------------------------------------- helpers
def ls_client(server) -> LabelStudio:
    return LabelStudio(server.url, server.token)


def make_users(ls: LabelStudio, *roles: str) -> dict[str, tuple[int, str]]:
    """role -> (user id, e-mail); e-mails are unique per call (the server lives all session)."""
    tag = uuid.uuid4().hex[:6]
    out = {}
    for role in roles:
        email = f"{role}-{tag}@example.com"
        out[role] = (ls.create_user(email), email)
    return out


def answer(verdict: str, mask: np.ndarray | None = None, fix: str | None = None) -> list[dict]:
    result = [{"from_name": "verdict", "to_name": "image", "type": "choices", "value": {"choices": [verdict]}}]
    if mask is not None:
        result.append(brush_result(masks.encode(mask), mask.shape[1], mask.shape[0], uuid.uuid4().hex[:10]))
    if fix:
        result.append({"from_name": "expression_fix", "to_name": "image", "type": "textarea", "value": {"text": [fix]}})
    return result


def proposal(ws, tid: str) -> np.ndarray:
    with Catalog(ws.catalog_path) as cat:
        (rle,) = cat.conn.execute("SELECT rle FROM proposals WHERE triplet_id=?", (tid,)).fetchone()
    return masks.decode(masks.loads(rle))


def morph(m: np.ndarray, px: int) -> np.ndarray:
    """Grow (px > 0) or shrink (px < 0) a mask by |px| pixels."""
    kernel = np.ones((3, 3), np.uint8)
    op = cv2.dilate if px > 0 else cv2.erode
    return op(m, kernel, iterations=abs(px))


def far_blob(m: np.ndarray) -> np.ndarray:
    """A square of the same size in the image corner farthest from the mask: IoU 0 with it."""
    h, w = m.shape
    ys, xs = np.nonzero(m)
    side = max(int(np.sqrt(m.sum())), 2)
    out = np.zeros_like(m)
    y0 = 0 if ys.mean() > h / 2 else h - side
    x0 = 0 if xs.mean() > w / 2 else w - side
    out[y0:y0 + side, x0:x0 + side] = 1
    assert not (out & m).any()
    return out


def largest(ws, n: int) -> list[str]:
    """The n queued triplets with the largest proposal masks (room to grow and shrink)."""
    with Catalog(ws.catalog_path) as cat:
        queue = review_queue(cat)
    return [q.triplet_id for q in sorted(queue, key=lambda q: -masks.area(q.rle))[:n]]


def rows(ws, sql: str, *params) -> list[tuple]:
    with Catalog(ws.catalog_path) as cat:
        return cat.conn.execute(sql, params).fetchall()


# ----------------------------------------------------------------------------- tests
def test_push_review_pull_consensus_adjudication_final(review_workspace, label_studio) -> None:
    ws = review_workspace()
    first = push(ws)
    assert first.queued >= 4 and first.imported == first.queued and first.already_there == 0
    assert first.model_versions == ["box"]
    ls = ls_client(label_studio)
    pid = first.project_id
    server_tasks = [t for _, page in ls.task_pages(pid, annotations=False) for t in page]
    with Catalog(ws.catalog_path) as cat:
        queue = review_queue(cat)
    # one task per triplet, in the queue's order: most uncertain first
    assert [t["data"]["triplet_id"] for t in server_tasks] == [q.triplet_id for q in queue]
    # pushing again, even without the local state file, adds nothing
    assert push(ws).imported == 0
    state_path(ws).unlink()
    again = push(ws)
    assert again.imported == 0 and again.already_there == first.queued and again.project_id == pid
    assert sum(len(p) for _, p in ls.task_pages(pid, annotations=False)) == first.queued
    # the image is served from the workspace image folder, and nothing outside it is
    image = server_tasks[0]["data"]["image"]
    assert image.startswith("/data/local-files/?d=") and ls.status_of(image) == 200
    outside = ws.pipeline_path.relative_to(label_studio.document_root).as_posix()
    assert ls.status_of("/data/local-files/?d=" + outside) == 404

    tasks = load_state(ws)["tasks"]
    users = make_users(ls, "accurate", "sloppy", "rejecting", "expert")
    uid = {role: u[0] for role, u in users.items()}
    t_ok, t_low, t_drop, t_short = largest(ws, 4)
    P = {t: proposal(ws, t) for t in (t_ok, t_low, t_drop, t_short)}
    fix = "the vehicle parked at the left edge of the image"
    plan = {
        t_ok: {"accurate": answer("corrected", morph(P[t_ok], -1)), "sloppy": answer("corrected", morph(P[t_ok], 1)),
               "rejecting": answer("accept", P[t_ok])},
        t_low: {"accurate": answer("corrected", morph(P[t_low], -1)), "sloppy": answer("corrected", far_blob(P[t_low])),
                "rejecting": answer("accept")},                       # accepted as shown, nothing drawn
        t_drop: {"accurate": answer("expression-wrong", fix=fix), "sloppy": answer("accept", P[t_drop]),
                 "rejecting": answer("expression-wrong")},
        t_short: {"accurate": answer("accept", P[t_short])},
    }
    for tid, by_role in plan.items():
        for role, result in by_role.items():
            ls.create_annotation(tasks[tid], result, completed_by=uid[role], lead_time=4.2)
    ls.post(f"/api/tasks/{tasks[t_short]}/annotations/", {"result": [], "was_cancelled": True,
                                                          "completed_by": uid["sloppy"]})

    report = pull(ws)
    assert report.decisions == {"consensus": 1, "adjudicate": 1, "expression-wrong": 1}
    assert report.reviews_new == 10 and report.skipped == {"skipped by the annotator": 1}
    # consensus by hand: pixels at least two of the three masks hold
    A, S = morph(P[t_ok], -1), morph(P[t_ok], 1)
    expected = ((A.astype(int) + S + P[t_ok]) >= 2).astype(np.uint8)
    (c_rle, agreement, decision), = rows(ws, "SELECT rle, agreement, decision FROM consensus WHERE triplet_id=?", t_ok)
    assert decision == "consensus" and masks.loads(c_rle) == masks.encode(expected)
    assert agreement == pytest.approx(mean_pairwise_iou([A, S, P[t_ok]]), abs=1e-6)
    # every annotator's mask and verdict is kept; an accept without drawing is the proposal
    reviews = {(t, a.split("-")[0]): (v, r, f) for t, a, v, r, f in rows(
        ws, "SELECT triplet_id, annotator, verdict, rle, corrected_expression FROM reviews")}
    assert reviews[(t_low, "rejecting")][:2] == ("accept", masks.dumps(masks.encode(P[t_low])))
    assert reviews[(t_drop, "accurate")] == ("expression-wrong", None, fix)
    # the rejected triplet is dropped with its reason; its corrected expression is a new candidate
    (reason, detail), = rows(ws, "SELECT reason, detail FROM rejects WHERE stage='review' AND ref=?", t_drop)
    assert reason == "expression_wrong" and "2 of 3 reviewers rejected" in detail
    (new_expr, attrs), = rows(ws, "SELECT expression, attributes_json FROM triplets WHERE source_ref LIKE '%#review'")
    assert new_expr == fix and json.loads(attrs)["derived_from"] == t_drop
    # below the quorum: no decision yet
    assert rows(ws, "SELECT * FROM consensus WHERE triplet_id=?", t_short) == []

    # low agreement went to the adjudication project, with the fused mask as its starting point
    state = load_state(ws)
    adj_task = state["adjudication_tasks"][t_low]
    assert set(state["adjudication_tasks"]) == {t_low}
    adj = ls.get(f"/api/tasks/{adj_task}/")
    shown = masks.brush_decode(adj["predictions"][0]["result"][0]["value"]["rle"], *P[t_low].shape)
    assert np.array_equal(shown, ((morph(P[t_low], -1).astype(int) + far_blob(P[t_low]) + P[t_low]) >= 2))
    assert "reviewers disagree" in adj["data"]["note"]
    assert pull(ws).adjudication_tasks_new == 0                          # not sent twice
    expert_mask = morph(P[t_low], -1)
    ls.create_annotation(adj_task, answer("corrected", expert_mask), completed_by=uid["expert"])
    settled = pull(ws)
    assert settled.adjudicated == {"adjudicated": 1} and settled.reviews_new == 1
    (c_rle, decision), = rows(ws, "SELECT rle, decision FROM consensus WHERE triplet_id=?", t_low)
    assert decision == "adjudicated" and masks.loads(c_rle) == masks.encode(expert_mask)
    assert pull(ws).reviews_new == 0

    # finalize takes the reviewed masks into `final`
    run_finalize(ws, ws.load(), progress=False)
    final = dict(rows(ws, "SELECT triplet_id, mask_origin FROM final"))
    assert final[t_ok] == "consensus" and final[t_low] == "adjudicated"
    assert t_drop not in final and t_short not in final

    info = review_status(ws)
    assert info["tasks_pushed"] == first.queued and info["awaiting_adjudication"] == 0
    assert info["decisions"] == {"adjudicated": 1, "consensus": 1, "expression-wrong": 1}
    assert info["annotations_per_task"] == {"1": 1, "3": 3}
    per = {name.split("-")[0]: a for name, a in info["annotators"].items()}
    assert per["sloppy"]["mean_iou_vs_consensus"] < per["accurate"]["mean_iou_vs_consensus"]
    assert users["sloppy"][1] in info["annotators_below_threshold"]
    assert users["accurate"][1] not in info["annotators_below_threshold"]


def test_pull_after_the_server_is_killed_midway(review_workspace, label_studio) -> None:
    ws = review_workspace(page_size=1)
    pushed = push(ws)
    ls = ls_client(label_studio)
    users = make_users(ls, "a", "b", "c")
    tasks = load_state(ws)["tasks"]
    for tid, task in tasks.items():
        for uid, _ in users.values():
            ls.create_annotation(task, answer("accept", proposal(ws, tid)), completed_by=uid)
    pages: list[int] = []

    def kill_after_two_pages(done: int, total: int) -> None:
        pages.append(done)
        if len(pages) == 2:
            label_studio.kill()                                   # SIGKILL by PID, mid-pull

    try:
        with pytest.raises(ReviewError, match="cannot reach Label Studio"):
            pull(ws, on_page=kill_after_two_pages)
    finally:
        label_studio.start()
    n = pushed.queued
    committed = 3 * len(pages)                                    # one task of three reviews per page
    assert rows(ws, "SELECT COUNT(*) FROM reviews") == [(committed,)] and 0 < committed < 3 * n
    assert rows(ws, "SELECT COUNT(*) FROM consensus") == [(len(pages),)]    # decided page by page
    resumed = pull(ws)
    assert resumed.reviews_new == 3 * n - committed and resumed.decisions == {"consensus": n - len(pages)}
    assert rows(ws, "SELECT COUNT(*) FROM reviews") == [(3 * n,)]
    assert rows(ws, "SELECT triplet_id, annotator FROM reviews GROUP BY 1, 2 HAVING COUNT(*) > 1") == []
    again = pull(ws)
    assert again.reviews_new == 0 and not again.decisions


def test_flag_mode_adjudication_and_staple(review_workspace, label_studio) -> None:
    ls = ls_client(label_studio)
    users = make_users(ls, "a", "b", "expert")
    ws = review_workspace(annotators_per_task=2, consensus="staple", adjudication="flag",
                          adjudicators=[users["expert"][1]])
    push(ws)
    tasks = load_state(ws)["tasks"]
    t_ok, t_low = largest(ws, 2)
    P = {t: proposal(ws, t) for t in (t_ok, t_low)}
    for role in ("a", "b"):
        ls.create_annotation(tasks[t_ok], answer("accept", P[t_ok]), completed_by=users[role][0])
    ls.create_annotation(tasks[t_low], answer("accept", P[t_low]), completed_by=users["a"][0])
    ls.create_annotation(tasks[t_low], answer("corrected", far_blob(P[t_low])), completed_by=users["b"][0])
    first = pull(ws)
    assert first.decisions == {"consensus": 1, "adjudicate": 1} and first.adjudication_tasks_new == 1
    (c_rle,), = rows(ws, "SELECT rle FROM consensus WHERE triplet_id=?", t_ok)
    assert masks.loads(c_rle) == masks.encode(P[t_ok])
    flagged = ls.get(f"/api/tasks/{tasks[t_low]}/")["data"]
    assert flagged["adjudicate"] is True and flagged["note"].startswith("ADJUDICATE")
    assert "adjudication_project_id" not in load_state(ws)
    ls.create_annotation(tasks[t_low], answer("reject-mask"), completed_by=users["expert"][0])
    second = pull(ws)
    assert second.adjudicated == {"reject-mask": 1} and second.adjudication_tasks_new == 0
    assert rows(ws, "SELECT decision FROM consensus WHERE triplet_id=?", t_low) == [("reject-mask",)]
    (reason, detail), = rows(ws, "SELECT reason, detail FROM rejects WHERE stage='review' AND ref=?", t_low)
    assert reason == "reject_mask" and users["expert"][1] in detail
    # the expert's answer is stored apart and does not count toward the reviewers' quorum
    assert rows(ws, "SELECT task_id FROM reviews WHERE annotator=?", users["expert"][1]) == [(f"adj:{tasks[t_low]}",)]


def _cli(ws, *args: str, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    return subprocess.run([sys.executable, "-m", "risbench_builder", "review", *args, "--workspace", str(ws.path)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_and_tokens(review_workspace, label_studio) -> None:
    ws = review_workspace()
    wrong = "wrong-token-" + uuid.uuid4().hex
    bad = _cli(ws, "push", token=wrong)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and bad.stdout == "", bad.stderr
    assert TOKEN_ENV in lines[0] and "rejected the token" in lines[0] and wrong not in bad.stderr
    missing = _cli(ws, "push", token=None)
    assert missing.returncode == 1 and f"set the environment variable {TOKEN_ENV}" in missing.stderr
    pat = ls_client(label_studio).post("/api/token/", {})["token"]       # a personal access token (JWT)
    ok = _cli(ws, "push", token=pat)
    assert ok.returncode == 0 and pat not in ok.stdout + ok.stderr, ok.stderr
    ok = _cli(ws, "push", token=label_studio.token)                      # and the legacy token
    assert ok.returncode == 0 and "0 tasks imported" in ok.stdout, ok.stderr
    pulled = _cli(ws, "pull", token=label_studio.token)
    assert pulled.returncode == 0 and "review pull" in pulled.stdout, pulled.stderr
    for cmd in ("push", "pull"):                                        # --json: stdout is one JSON document
        piped = _cli(ws, cmd, "--json", token=label_studio.token)
        assert piped.returncode == 0 and isinstance(json.loads(piped.stdout), dict), piped.stderr
    status = _cli(ws, "status", "--json", token=None)                 # status reads the catalog only
    assert status.returncode == 0 and json.loads(status.stdout)["tasks_pushed"] > 0
    for out in (ok, pulled, status):
        assert label_studio.token not in out.stdout + out.stderr
    assert label_studio.token not in state_path(ws).read_text()
    insecure = ws.pipeline_path.read_text().replace(label_studio.url, "http://ls.example.org:8080")
    ws.pipeline_path.write_text(insecure)
    plain = _cli(ws, "push", token=label_studio.token)
    assert plain.returncode == 1 and "allow_insecure_http" in plain.stderr


def test_a_malformed_answer_is_an_invalid_review_and_its_task_stays_open(review_workspace, label_studio) -> None:
    ws = review_workspace(annotators_per_task=2)
    push(ws)
    ls = ls_client(label_studio)
    users = make_users(ls, "good", "other", "broken")
    uid = {role: u[0] for role, u in users.items()}
    broken = users["broken"][1]
    tasks = load_state(ws)["tasks"]
    t_bad, t_ok, t_ok2 = largest(ws, 3)
    P = {t: proposal(ws, t) for t in (t_bad, t_ok, t_ok2)}
    for tid in (t_ok, t_ok2):
        for role in ("good", "other"):
            ls.create_annotation(tasks[tid], answer("accept", P[tid]), completed_by=uid[role])
    ls.create_annotation(tasks[t_bad], answer("accept", P[t_bad]), completed_by=uid["good"])
    # through the API an annotator can post a brush RLE that decodes to nothing, or a verdict
    # the labeling config does not have
    garbage = answer("corrected", P[t_bad])
    garbage[1]["value"]["rle"] = [1, 2, 3]
    bad_id = ls.create_annotation(tasks[t_bad], garbage, completed_by=uid["broken"])
    ls.create_annotation(tasks[t_ok], answer("maybe"), completed_by=uid["broken"])

    report = pull(ws)
    assert report.decisions == {"consensus": 2} and report.reviews_new == 5
    assert report.invalid == 2 and report.invalid_new == 2
    saved = json.loads((ws.reports / "review-pull.json").read_text())
    assert saved["invalid_reviews"] == 2
    bad_line, maybe_line = sorted(saved["invalid_review_details"], key=lambda line: "maybe" in line)
    assert bad_line.startswith(f"task {tasks[t_bad]} (triplet {t_bad}) by {broken}: brush rle does not decode (")
    assert maybe_line == (f"task {tasks[t_ok]} (triplet {t_ok}) by {broken}: verdict 'maybe' is not one of accept, "
                          "corrected, reject-mask, expression-ambiguous, expression-wrong")
    # the invalid answer is no review: t_bad has one of the two it needs, and stays open
    assert rows(ws, "SELECT triplet_id FROM consensus ORDER BY 1") == sorted([(t_ok,), (t_ok2,)])
    assert rows(ws, "SELECT COUNT(*) FROM reviews WHERE annotator=?", broken) == [(0,)]
    with Catalog(ws.catalog_path) as cat:
        assert t_bad in {q.triplet_id for q in review_queue(cat)}
    info = review_status(ws)
    assert info["invalid_reviews"] == 2 and info["invalid_by_annotator"] == {broken: 2}
    assert info["annotators"][broken]["invalid"] == 2 and info["annotators"][broken]["reviews"] == 0
    assert info["annotations_per_task"] == {"1": 1, "2": 2}

    # the annotator fixes the answer in Label Studio: the next pull takes it and decides the task
    ls.patch(f"/api/annotations/{bad_id}/", {"result": answer("accept", P[t_bad])})
    again = pull(ws)
    assert again.decisions == {"consensus": 1} and again.reviews_new == 1 and again.invalid == 1
    assert review_status(ws)["invalid_by_annotator"] == {broken: 1}


def _decided(ws) -> dict[str, tuple]:
    return {t: (d, r) for t, d, r in rows(ws, "SELECT triplet_id, decision, rle FROM consensus")}


def test_an_answer_changed_in_label_studio_counts_and_redecides_its_triplet(review_workspace, label_studio) -> None:
    """Annotators update submitted answers in Label Studio; the pull takes each one's latest
    answer, re-decides what it changes (as a first pull of the same answers would), and an
    expert's answer stands until the expert changes it."""
    ws = review_workspace()
    untouched = ws.path.with_name(ws.path.name + "-clean")
    push(ws)
    shutil.copytree(ws.path, untouched)                           # the same tasks, never pulled
    ls = ls_client(label_studio)
    users = make_users(ls, "a", "b", "c", "expert")
    uid = {role: u[0] for role, u in users.items()}
    tasks = load_state(ws)["tasks"]
    t_same, t_drop, t_adj = largest(ws, 3)
    P = {t: proposal(ws, t) for t in (t_same, t_drop, t_adj)}
    ann = {(t, role): ls.create_annotation(tasks[t], answer("accept", P[t]), completed_by=uid[role])
           for t in P for role in "abc"}
    assert pull(ws).decisions == {"consensus": 3}
    before = _decided(ws)

    ls.patch(f"/api/annotations/{ann[t_same, 'a']}/", {"result": answer("accept", P[t_same])})  # saved again
    for role in "ab":                                             # two of three change their minds
        ls.patch(f"/api/annotations/{ann[t_drop, role]}/", {"result": answer("reject-mask")})
    ls.patch(f"/api/annotations/{ann[t_adj, 'b']}/", {"result": answer("corrected", morph(P[t_adj], -2))})
    ls.patch(f"/api/annotations/{ann[t_adj, 'c']}/", {"result": answer("corrected", far_blob(P[t_adj]))})
    changed = pull(ws)
    assert changed.reviews_new == 0 and changed.reviews_changed == 4
    assert changed.decisions == {"reject-mask": 1, "adjudicate": 1} and changed.adjudication_tasks_new == 1
    after = _decided(ws)
    assert after[t_same] == before[t_same] and after[t_drop] == ("reject-mask", None)
    assert after[t_adj] == ("adjudicate", masks.dumps(masks.encode(morph(P[t_adj], -2))))     # the pixel majority
    assert rows(ws, "SELECT reason FROM rejects WHERE stage='review' AND ref=?", t_drop) == [("reject_mask",)]
    assert pull(ws).reviews_changed == 0                          # nothing changed since

    # the catalog is the one a first pull of the same answers gives
    clean = pull(Workspace(untouched))
    assert clean.reviews_new == 9 and clean.decisions == {"consensus": 1, "reject-mask": 1, "adjudicate": 1}
    for sql in ("SELECT triplet_id, task_id, annotator, rle, verdict FROM reviews ORDER BY 1, 2, 3",
                "SELECT triplet_id, decision, rle, agreement FROM consensus ORDER BY 1",
                "SELECT ref, reason FROM rejects WHERE stage='review' ORDER BY 1"):
        assert rows(ws, sql) == rows(Workspace(untouched), sql)

    # the expert accepts the fused mask as shown, without drawing: that mask becomes final
    adj_task = load_state(ws)["adjudication_tasks"][t_adj]
    expert_ann = ls.create_annotation(adj_task, answer("accept"), completed_by=uid["expert"])
    assert pull(ws).adjudicated == {"adjudicated": 1}
    assert _decided(ws)[t_adj] == ("adjudicated", after[t_adj][1])
    # the expert changes the answer: it counts
    expert_mask = morph(P[t_adj], -1)
    ls.patch(f"/api/annotations/{expert_ann}/", {"result": answer("corrected", expert_mask)})
    assert pull(ws).adjudicated == {"adjudicated": 1}
    assert _decided(ws)[t_adj] == ("adjudicated", masks.dumps(masks.encode(expert_mask)))
    # a reviewer changes theirs after the expert decided: stored, and the expert's decision stands
    ls.patch(f"/api/annotations/{ann[t_adj, 'c']}/", {"result": answer("accept", P[t_adj])})
    late = pull(ws)
    assert late.reviews_changed == 1 and late.kept_expert_decision == 1 and not late.decisions
    assert _decided(ws)[t_adj] == ("adjudicated", masks.dumps(masks.encode(expert_mask)))

    # one annotator with two answers on a task: the one saved last counts, not the one made last
    def verdict_of_a() -> str:
        return rows(ws, "SELECT verdict FROM reviews WHERE triplet_id=? AND annotator=?", t_same, users["a"][1])[0][0]

    ls.create_annotation(tasks[t_same], answer("reject-mask"), completed_by=uid["a"])
    assert pull(ws).reviews_changed == 1 and verdict_of_a() == "reject-mask"
    ls.patch(f"/api/annotations/{ann[t_same, 'a']}/", {"result": answer("corrected", morph(P[t_same], -1))})
    assert pull(ws).reviews_changed == 1 and verdict_of_a() == "corrected"
    assert pull(ws).reviews_changed == 0


def test_a_project_of_another_workspace_is_refused(review_workspace, label_studio) -> None:
    """Two builds of one pipeline name share the default project title: the second push must not
    put its tasks in the first one's project, where its reviewers would meet another dataset."""
    first = review_workspace()
    push(first)
    pid, title = load_state(first)["project_id"], first.load().review.project_title
    spec = review_pipeline(label_studio)                   # another dataset: none of first's triplets
    spec["sources"][0]["name"] = "other"
    spec["review"]["project_title"] = title
    path = label_studio.document_root / f"{first.path.name}-other.yaml"
    path.write_text(yaml.safe_dump(spec))
    other = init_workspace(path.with_suffix(""), path)
    run_ingest(other, other.load(), progress=False)
    run_refine(other, other.load(), progress=False)
    with pytest.raises(ReviewError, match=rf"project {pid} .* holds \d+ tasks, none of them of this workspace's "
                                          r"triplets .* set review.project_title in "):
        push(other)
    assert "project_id" not in load_state(other)
    spec["review"]["project_title"] = title + " 2"
    other.pipeline_path.write_text(yaml.safe_dump(spec))
    second = push(other)
    assert second.project_id != pid and second.imported == second.queued > 0
