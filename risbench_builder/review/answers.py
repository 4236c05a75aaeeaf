"""One Label Studio answer, read as untrusted input.

Anyone with an account can post any JSON as an annotation through the API, so nothing in an
answer is trusted: the verdict must be one of the labeling config's choices, the brush RLE must
decode to a mask of the image's size, the corrected expression is bounded, and the annotator's
name (their e-mail or user name) is cleaned and bounded before it becomes a catalog key or part
of a message. :func:`read_annotation` raises :class:`InvalidAnswer` (a ``ValueError``) with a
one-line reason; :data:`DECODE_ERRORS` is what the caller catches around one annotation, since
the mask decoder itself may raise ``ValueError``, ``TypeError``, ``OverflowError`` or ``KeyError``
on bytes nobody checked. A pull records such an answer as an *invalid review* (see ``sync``).

>>> read_annotation([{"from_name": "verdict", "value": {"choices": ["accept"]}}], 4, 4).verdict
'accept'
>>> read_annotation([{"from_name": "verdict", "value": {"choices": ["maybe"]}}], 4, 4)
Traceback (most recent call last):
...
risbench_builder.review.answers.InvalidAnswer: verdict 'maybe' is not one of accept, corrected, reject-mask, expression-ambiguous, expression-wrong
>>> clean_name("a\\nb\\x00@x.org")
'a b@x.org'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from .. import masks
from ..text import clean_text, shown
from .consensus import VERDICTS
from .tasks import FROM_FIX, FROM_MASK, FROM_VERDICT

INVALID_REVIEW = "invalid_review"      # rejects.reason of an answer that cannot be used (stage review)
DECODE_ERRORS = (ValueError, TypeError, OverflowError, KeyError)
MAX_ANNOTATOR_CHARS = 254              # the longest e-mail address (RFC 5321)
MAX_REASON_CHARS = 200
MAX_BRUSH_REGIONS = 256                # per answer; each is decoded at the image's full size
DEFAULT_MAX_EXPRESSION_CHARS = 1000    # pull passes the pipeline's ingest.max_expression_chars


class InvalidAnswer(ValueError):
    """An answer that cannot be used; ``str()`` is the one-line reason."""


@dataclass
class Answer:
    verdict: str
    mask: Optional[np.ndarray]
    corrected: Optional[str]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters; a cut one ends in a hash of the whole, so two long
    values that share a prefix stay apart."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    return f"{text[:limit - 13]}~{digest}"


def clean_name(name: Any, fallback: str = "unknown") -> str:
    """An annotator's e-mail or user name as a catalog key: one printable line, bounded."""
    text = clean_text(name) if isinstance(name, str) else ""
    return bounded(text, MAX_ANNOTATOR_CHARS) if text else fallback


def _user_id(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def annotator_name(who: Any, users: Mapping[int, str]) -> str:
    """``completed_by`` of an annotation (a user id, or the expanded user) as a name."""
    if isinstance(who, dict):
        uid = _user_id(who.get("id"))
        fallback = f"user-{uid}" if uid is not None else "unknown"
        for key in ("email", "username"):
            if isinstance(who.get(key), str) and clean_text(who[key]):
                return clean_name(who[key])
        return clean_name(users.get(uid), fallback) if uid is not None else fallback
    uid = _user_id(who)
    if uid is None:
        return "unknown"
    return clean_name(users.get(uid), f"user-{uid}")


def reason(exc: BaseException) -> str:
    """A one-line, bounded reason for one of :data:`DECODE_ERRORS`."""
    if isinstance(exc, InvalidAnswer):
        text = str(exc)
    elif isinstance(exc, KeyError):
        text = f"missing key {shown(exc.args[0] if exc.args else None)}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = clean_text(text) or type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 3] + "..."


def _size(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise InvalidAnswer(f"brush {what} {shown(value)} is not a whole number")
    return int(value)


def _brush(r: dict, value: dict, height: int, width: int) -> np.ndarray:
    if r.get("type") != "brushlabels":
        raise InvalidAnswer(f"mask region of type {shown(r.get('type'))}, not brushlabels")
    if "rle" not in value:
        raise InvalidAnswer("mask region without rle")
    h = _size(r.get("original_height"), "height", height)
    w = _size(r.get("original_width"), "width", width)
    if (h, w) != (height, width):
        raise InvalidAnswer(f"brush drawn on {shown(h, 24)}x{shown(w, 24)}, the image is {height}x{width}")
    rle = value["rle"]
    if not isinstance(rle, list) or not rle:
        raise InvalidAnswer(f"brush rle is {shown(rle)}, not a list of bytes")
    # at most 32 value bits and 19 header bits per RGBA byte: no valid stream is longer
    if len(rle) > 32 * height * width + 64:
        raise InvalidAnswer(f"brush rle holds {len(rle)} bytes, more than any {height}x{width} brush")
    data = np.asarray(rle)                 # ValueError for a ragged list; huge numbers give dtype object
    if data.ndim != 1 or data.dtype.kind not in "iu":
        raise InvalidAnswer(f"brush rle {shown(rle)} is not a list of whole numbers")
    if int(data.min()) < 0 or int(data.max()) > 255:
        raise InvalidAnswer(f"brush rle holds values outside 0-255 ({int(data.min())}..{int(data.max())})")
    try:
        return masks.brush_decode(data, height, width)
    except DECODE_ERRORS as exc:
        raise InvalidAnswer(f"brush rle does not decode ({exc})") from None


def _verdict(value: dict) -> str:
    choices = value["choices"]
    if not isinstance(choices, list) or len(choices) != 1:
        raise InvalidAnswer(f"verdict {shown(choices)} is not one choice")
    if not isinstance(choices[0], str) or choices[0] not in VERDICTS:
        raise InvalidAnswer(f"verdict {shown(choices[0])} is not one of {', '.join(VERDICTS)}")
    return choices[0]


def _text(value: dict) -> str:
    text = value["text"]
    parts = [text] if isinstance(text, str) else text
    if not isinstance(parts, list) or not all(isinstance(t, str) for t in parts):
        raise InvalidAnswer(f"corrected expression {shown(text)} is not text")
    return " ".join(parts)


def read_annotation(result: Any, height: int, width: int, *,
                    max_expression_chars: int = DEFAULT_MAX_EXPRESSION_CHARS) -> Answer:
    """Verdict, brush mask (the union of all brush regions; None when none was drawn) and
    corrected expression of one annotation's ``result``. Regions of other controls (a
    relation, a control this config lacks) are ignored; anything wrong in the verdict, brush or
    text raises one of :data:`DECODE_ERRORS`, mostly :class:`InvalidAnswer` with the reason."""
    if not isinstance(result, list):
        raise InvalidAnswer(f"result is {_kind(result)}, not a list")
    verdicts: set[str] = set()
    mask: Optional[np.ndarray] = None
    texts: list[str] = []
    regions = 0
    for i, r in enumerate(result):
        if not isinstance(r, dict):
            raise InvalidAnswer(f"result item {i} is {_kind(r)}, not an object")
        name = r.get("from_name")
        if name not in (FROM_VERDICT, FROM_FIX, FROM_MASK):
            continue
        value = r.get("value")
        if not isinstance(value, dict):
            raise InvalidAnswer(f"{name} value is {_kind(value)}, not an object")
        if name == FROM_VERDICT:
            verdicts.add(_verdict(value))
        elif name == FROM_FIX:
            texts.append(_text(value))
        else:
            regions += 1
            if regions > MAX_BRUSH_REGIONS:
                raise InvalidAnswer(f"more than {MAX_BRUSH_REGIONS} brush regions")
            m = _brush(r, value, height, width)
            mask = m if mask is None else np.maximum(mask, m)
    if not verdicts:
        raise InvalidAnswer("no verdict")
    if len(verdicts) > 1:
        raise InvalidAnswer(f"{len(verdicts)} different verdicts ({', '.join(sorted(verdicts))})")
    corrected = clean_text(" ".join(texts)) or None
    if corrected is not None and len(corrected) > max_expression_chars:
        raise InvalidAnswer(f"corrected expression has {len(corrected)} characters, more than "
                            f"{max_expression_chars}")
    return Answer(verdicts.pop(), mask, corrected)
