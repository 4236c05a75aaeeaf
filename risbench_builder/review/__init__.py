"""Human review in Label Studio: push uncertain masks, pull reviews, consensus, adjudication.

    push(ws)                 one task per queued triplet (idempotent), brush prediction per task
    pull(ws)                 reviews -> consensus / drop / adjudication -> adjudicated
    review_status(ws)        tasks, annotations per task, agreement, adjudication, per annotator
    export_import_file(ws)   W/review/import-tasks.json without a server (for the demo)

The token comes only from the environment variable named by ``review.token_env``.
"""

from .client import LabelStudio, ReviewError
from .consensus import Decision, Vote, decide, majority_vote, mean_pairwise_iou, staple
from .status import review_status
from .sync import PullReport, PushReport, pull, push
from ..readmodel import review_queue
from .tasks import ImportFile, export_import_file

__all__ = [
    "Decision", "ImportFile", "LabelStudio", "PullReport", "PushReport", "ReviewError", "Vote", "decide",
    "export_import_file", "majority_vote", "mean_pairwise_iou", "pull", "push", "review_queue", "review_status",
    "staple",
]
