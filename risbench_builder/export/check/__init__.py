"""``risbench check PATH``: validate an export of ours or a third-party download in one of its formats.

The format is detected from the layout: ``hf`` (``data/*.parquet``), ``refer`` (``*/refs(*).p``
with ``instances.json``, e.g. a downloaded RRSIS-D), ``native`` (``output_phrase_*.txt``, e.g.
a RISBench or RefSegRS download) or ``coco`` (``annotations/*.json``). A folder holding several
exports (``W/exports``) or a workspace is checked export by export.

Every problem becomes a :class:`Failure` of one of the :data:`KINDS`, with where it is and
what is wrong; nothing stops at the first problem. A download is untrusted input: every path
named inside it (an image ``file_name``, a phrase-file name, an ``index.csv`` row, a manifest
entry, an HF image ``path``) must stay inside the export folder; one that is absolute, has a
``..`` component or resolves outside it through a symlink is a ``path_escape`` failure and is
never opened. Masks, RLEs and images are checked in a
pool of worker processes on large exports, and manifest hashes in threads beside them.

The package mirrors the writers: :mod:`.report` (failures, the report and the checks every format
shares), one module per format (:mod:`.hf`, :mod:`.refer`, :mod:`.native`, :mod:`.coco`),
:mod:`.manifest` (``manifest.json``) and :mod:`.run` (finding exports and checking each).
"""

from __future__ import annotations

from .report import KINDS, CheckReport, Failure, SeenFiles, SplitEntry, rle_counts, rle_failures, rle_string
from .run import CHECKS, check_export, check_path, detect, find_exports

__all__ = ["CHECKS", "KINDS", "CheckReport", "Failure", "SeenFiles", "SplitEntry", "check_export", "check_path",
           "detect", "find_exports", "rle_counts", "rle_failures", "rle_string"]
