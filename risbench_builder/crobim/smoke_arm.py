"""One arm of the smoke validation in its own process (``smoke(side_by_side=True)`` starts two).

``python -m risbench_builder.crobim.smoke_arm JOB.pkl``: the job file is written by the parent
``smoke`` call into its private temporary folder just before (never a user file). Log lines go to
stdout; the last line is the arm's result as JSON after ``RESULT_PREFIX``.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import torch

from .smoke import RESULT_PREFIX


def main(job_file: str) -> None:
    job, name, texts, threads = pickle.loads(Path(job_file).read_bytes())
    torch.set_num_threads(threads)
    run = job.run(name, texts, lambda line: print(line, flush=True))
    print(RESULT_PREFIX + json.dumps(run), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
