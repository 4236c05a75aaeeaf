"""Exports of the finished dataset (hf, refer, native, coco), the format checker and publish.

Every writer reads the same stream of :class:`~risbench_builder.finalize.records.FinalRecord`
(prepared once per run in :mod:`.base`) and writes one folder with a ``manifest.json``.
"""

from __future__ import annotations

from typing import Any


def writers() -> dict[str, Any]:
    """Export target name -> writer class (imports deferred: hf needs the hub extra)."""
    from .coco import CocoWriter
    from .hf import HFWriter
    from .native import NativeWriter
    from .refer import ReferWriter

    return {"hf": HFWriter, "refer": ReferWriter, "native": NativeWriter, "coco": CocoWriter}
