"""DIOR-RSVG visual grounding: DIOR HBB XML restricted to referred objects, plus descriptions.

Layout: ``Annotations/*.xml``, ``JPEGImages/*.jpg`` and ``train.txt`` / ``val.txt`` /
``test.txt`` at the root. Each object has a ``<description>`` (the expression); ``<bndbox>``
holds either ``<xmin>…</ymax>`` children or, in the released files, flat ``133 237 684 672``
text. Both are read.

The split files list *global object indices*: objects counted over all XML files, then in
file order. The original loader walked ``os.walk`` order, which is unsorted and filesystem
dependent; here files are counted in sorted path order (the order of :meth:`units`), so the
mapping is deterministic. Verify it against the published split sizes (26,991 / 3,829 /
7,500). A malformed file counts as holding 0 objects.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cached_property
from typing import Any

from ..masks import Box
from .base import MALFORMED_RECORD, BadInput
from .dior import XmlReader, parse_bndbox, read_split_lists


class DiorRsvgReader(XmlReader):
    """Referring records with ``expression`` = the ``<description>`` text, passed through as is."""

    kind = "dior_rsvg"
    default_labels = "Annotations"
    default_images = ("JPEGImages",)

    @cached_property
    def offsets(self) -> dict[str, int]:
        """Global index of each unit's first object (parses every file once, on first use)."""
        offsets: dict[str, int] = {}
        total = 0
        for unit in self.units():
            offsets[unit] = total
            try:
                total += len(self.load(unit).findall("object"))
            except BadInput:
                pass        # read() rejects the file; it holds no indices
        return offsets

    @cached_property
    def _splits(self) -> dict[int, str]:
        return {int(k): v for k, v in read_split_lists(self.root, self.limits).items() if k.isdigit()}

    def _global_index(self, unit: str, index: int) -> int | None:
        offset = self.offsets.get(unit)
        return None if offset is None else offset + index

    def split_of(self, unit: str, index: int) -> str | None:
        g = self._global_index(unit, index)
        return None if g is None else self._splits.get(g)

    def extra_attributes(self, unit: str, index: int) -> dict[str, Any]:
        g = self._global_index(unit, index)
        return {} if g is None else {"global_index": g}

    def parse_object(self, obj: ET.Element) -> tuple[Box, None, str, dict[str, Any]]:
        box = parse_bndbox(obj)
        description = obj.find("description")
        if description is None:
            raise BadInput(MALFORMED_RECORD, "object has no <description>")
        return box, None, description.text or "", {}


READERS = {"dior_rsvg": DiorRsvgReader}
