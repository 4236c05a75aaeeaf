"""The expression-geometry check: do an expression's position words agree with its mask?

Absolute words ("on the left", "top-right corner", "in the center") are checked against the
mask centroid in thirds of the image; a word contradicts only when the centroid lies in the
*opposite* third, so objects near a boundary are never flagged. Relative words ("left-most",
"largest") are checked against the other objects of the same class in the same image, where
the catalog knows them. Words used relationally ("to the left of the ship", "on top of") are
not absolute and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

# word -> (axis, side): axis 0 = x, 1 = y; side -1 = low (left/top), +1 = high, 0 = centre
_ABSOLUTE = {
    "left": (0, -1), "right": (0, 1), "top": (1, -1), "upper": (1, -1), "bottom": (1, 1), "lower": (1, 1),
    "center": (None, 0), "centre": (None, 0), "central": (None, 0), "middle": (None, 0),
}
_RELATIVE = {
    "leftmost": (0, -1), "left-most": (0, -1), "rightmost": (0, 1), "right-most": (0, 1),
    "topmost": (1, -1), "top-most": (1, -1), "uppermost": (1, -1), "bottommost": (1, 1), "bottom-most": (1, 1),
    "lowermost": (1, 1), "lowest": (1, 1), "highest": (1, -1),
}
_SIZE = {"largest": 1, "biggest": 1, "larger": 1, "bigger": 1, "smallest": -1, "tiniest": -1, "smaller": -1}
_FURTHEST = re.compile(
    r"\b(?:furthest|farthest|most|closest|nearest)\s+(?:to\s+(?:the\s+)?)?(left|right|top|bottom)\b(?!\s+of\b)")
_RELATION = re.compile(r"\b(closest to|nearest to|next to|near|beside|adjacent|between|behind|above|below|"
                       r"surrounded|among|parked|along)\b")
_FRAME = {"image", "picture", "scene", "photo", "frame", "map", "view", "patch"}
_TOKEN = re.compile(r"[a-z]+(?:-[a-z]+)*")


@dataclass
class Parsed:
    absolute: list[str] = field(default_factory=list)
    relative: list[str] = field(default_factory=list)
    size: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)

    @property
    def distinguishes(self) -> bool:
        """Whether the expression has any position, size or relation word at all."""
        return bool(self.absolute or self.relative or self.size or self.relations)


def parse(expression: str) -> Parsed:
    """Position, size and relation words, absolute ones only where not used relationally.

    >>> p = parse("The white car to the left of the bus in the top-right corner, the largest one.")
    >>> p.absolute, p.size, p.relations
    (['top', 'right'], ['largest'], ['left of'])
    >>> parse("The court that is furthest to the left.").relative
    ['left-most']
    """
    # "furthest to the left", "closest to the bottom" compare with the other objects: left-most, bottom-most
    text = _FURTHEST.sub(r"\1-most", expression.lower())
    tokens = _TOKEN.findall(text)
    out = Parsed(relations=_RELATION.findall(text))
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if nxt == "of" and tokens[i + 2:i + 4][-1:] and tokens[i + 2:i + 4][-1] in _FRAME:
            nxt = ""                                   # "the top of the image" is absolute
        if tok in _RELATIVE:
            out.relative.append(tok)
        elif tok in _SIZE:
            out.size.append(tok)
        elif "-" in tok and all(p in _ABSOLUTE for p in tok.split("-")):
            out.absolute.extend(tok.split("-"))             # top-left, bottom-right, ...
        elif tok in _ABSOLUTE and nxt != "of" and not (tok == "top" and i > 0 and tokens[i - 1] == "on"):
            out.absolute.append(tok)
        elif tok in ("left", "right", "top", "bottom") and nxt == "of":
            out.relations.append(f"{tok} of")
    return out


@dataclass
class Contradiction:
    word: str
    reason: str


def check(parsed: Parsed, centroid: tuple[float, float], size: tuple[int, int], area: float,
          others: Sequence[tuple[float, float, float]] = ()) -> list[Contradiction]:
    """Contradictions of ``parsed`` for a mask with ``centroid`` (x, y) and ``area`` in an image
    of ``size`` (W, H); ``others`` are (cx, cy, area) of the other same-class objects."""
    w, h = size
    pos = (centroid[0] / w, centroid[1] / h)
    found: list[Contradiction] = []
    axes_named = {_ABSOLUTE[wd][0] for wd in parsed.absolute if _ABSOLUTE[wd][0] is not None}
    for word in dict.fromkeys(parsed.absolute):
        axis, side = _ABSOLUTE[word]
        if side == 0:
            # "center"/"middle" alone: the centroid must not sit in an outer sixth on either axis
            # that no other word names ("top middle" only constrains x).
            for ax in {0, 1} - axes_named:
                if not 1 / 6 <= pos[ax] <= 5 / 6:
                    found.append(Contradiction(word, f"centroid at {_pct(pos)} is at the edge, not the {word}"))
                    break
        elif (side < 0 and pos[axis] > 2 / 3) or (side > 0 and pos[axis] < 1 / 3):
            found.append(Contradiction(word, f"centroid at {_pct(pos)} lies in the opposite third"))
    # Relative words: another object must lie further that way by a quarter of this object's
    # size (touching courts and parked rows differ by little more than that).
    margin = max(2.0, 0.25 * area ** 0.5)
    for word in dict.fromkeys(parsed.relative):
        axis, side = _RELATIVE[word]
        for cx, cy, _ in others:
            if side * ((cx, cy)[axis] - centroid[axis]) > margin:
                found.append(Contradiction(word, f"another object of the class lies further {word.replace('most', '')}"))
                break
    for word in dict.fromkeys(parsed.size):
        side = _SIZE[word]
        if any(side * (a - area) > 0.25 * max(a, area) for _, _, a in others):
            found.append(Contradiction(word, f"another object of the class is clearly {'larger' if side > 0 else 'smaller'}"))
    return found


def _pct(pos: tuple[float, float]) -> str:
    return f"({pos[0]:.0%}, {pos[1]:.0%})"
