"""Language from the scene's real attributes: referring sentences, captions and QA pairs."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .scene import Referent, Scene, SceneObject


_NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "airplane": (("airplane", "airplanes"), ("plane", "planes"), ("aircraft", "aircraft")),
    "ship": (("ship", "ships"), ("boat", "boats"), ("vessel", "vessels")),
    "storage-tank": (("storage tank", "storage tanks"), ("tank", "tanks"), ("oil tank", "oil tanks")),
    "tennis-court": (("tennis court", "tennis courts"),),
    "basketball-court": (("basketball court", "basketball courts"),),
    "swimming-pool": (("swimming pool", "swimming pools"), ("pool", "pools")),
    "vehicle": (("vehicle", "vehicles"), ("car", "cars")),
    "roundabout": (("roundabout", "roundabouts"), ("traffic circle", "traffic circles")),
    "soccer-ball-field": (("soccer field", "soccer fields"), ("soccer ball field", "soccer ball fields"),
                          ("football field", "football fields")),
    "ground-track-field": (("ground track field", "ground track fields"), ("running track", "running tracks"),
                           ("athletics track", "athletics tracks")),
    "expressway-service-area": (("expressway service area", "expressway service areas"),
                                ("service area", "service areas"), ("highway rest area", "highway rest areas")),
}
_LARGE_VEHICLE_NOUNS = (("large vehicle", "large vehicles"), ("truck", "trucks"), ("vehicle", "vehicles"))
_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top-left": ("in the top-left corner", "at the top left of the image", "in the upper-left part of the image"),
    "top-middle": ("at the top of the image", "near the top center", "in the upper middle of the image"),
    "top-right": ("in the top-right corner", "at the top right of the image", "in the upper-right part of the image"),
    "middle-left": ("on the left side of the image", "in the middle of the left side", "at the center left"),
    "center": ("in the center of the image", "in the middle of the image", "near the center"),
    "middle-right": ("on the right side of the image", "in the middle of the right side", "at the center right"),
    "bottom-left": ("in the bottom-left corner", "at the bottom left of the image",
                    "in the lower-left part of the image"),
    "bottom-middle": ("near the bottom", "at the bottom center", "in the lower middle of the image"),
    "bottom-right": ("in the bottom-right corner", "at the bottom right of the image",
                     "in the lower-right part of the image"),
}
_REL_POSITION_WORDS = {"top-most": ("top-most", "topmost", "uppermost"), "bottom-most": ("bottom-most", "lowest"),
                       "left-most": ("left-most", "leftmost"), "right-most": ("right-most", "rightmost")}
_REL_POSITION_PHRASES = {"top-most": "closest to the top of the image", "bottom-most": "closest to the bottom",
                         "left-most": "furthest to the left", "right-most": "furthest to the right"}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}


def _nouns(o: SceneObject, rng: np.random.Generator) -> tuple[str, str]:
    table = _LARGE_VEHICLE_NOUNS if o.subtype == "large" else _NOUNS[o.category]
    return table[int(rng.integers(len(table)))]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _finish_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def _distinguishers(objects: list[SceneObject], i: int) -> list[str]:
    """What tells object ``i`` apart from its class mates: rel_size, rel_pos and/or pos."""
    o = objects[i]
    if o.is_unique:
        return ["plain", "pos", "pos"]
    kinds = [k for k, ok in (("rel_size", o.rel_size), ("rel_pos", o.rel_position)) if ok]
    shared = any(q.position == o.position for j, q in enumerate(objects) if j != i and q.category == o.category)
    if not shared or not kinds:
        kinds.append("pos")
    return kinds


def _sentence(objects: list[SceneObject], i: int, rng: np.random.Generator) -> str:
    """A templated referring expression from the object's real attributes.

    Unique objects may go without a position; other objects always carry what tells them apart.
    """
    o = objects[i]
    sing, plur = _nouns(o, rng)
    colour = o.colour if rng.random() < 0.75 else ""
    size = o.size if rng.random() < 0.6 else ""
    phrase = " ".join(w for w in (size, colour, sing) if w)
    pos = _pick(rng, _POSITION_PHRASES[o.position])
    kind = _pick(rng, _distinguishers(objects, i))
    if kind == "plain":
        text = _pick(rng, (f"The {phrase}.", f"The only {sing} in the image.",
                           f"{_article(phrase)} {phrase} in the image."))
    elif kind == "pos":
        options = [f"The {phrase} {pos}.", f"{_article(phrase)} {phrase} {pos}.", f"The {phrase} located {pos}."]
        if o.colour:
            options.append(f"The {sing} {pos}, which is {o.colour}.")
        text = _pick(rng, options)
    elif kind == "rel_pos":
        word = _pick(rng, _REL_POSITION_WORDS[o.rel_position])
        text = _pick(rng, (f"The {word} {phrase}.", f"The {word} {phrase} among the {plur}.",
                           f"The {phrase} that is {_REL_POSITION_PHRASES[o.rel_position]}."))
    else:
        plain = " ".join(w for w in (colour, sing) if w)
        where = f" {pos}" if rng.random() < 0.5 else ""
        if o.rel_size in ("larger", "smaller"):
            text = _pick(rng, (f"The {o.rel_size} of the two {plur}.", f"The {o.rel_size} {plain}{where}."))
        else:
            text = _pick(rng, (f"The {o.rel_size} {plain}{where}.", f"The {o.rel_size} of the {plur}."))
    return _finish_sentence(text)


def refer_objects(scene: Scene, rng: np.random.Generator, max_refs: int = 5) -> list[Referent]:
    """Pick 1-5 objects a sentence can single out (VRSBench refers about 1.8 per patch)."""
    objs = scene.objects
    if not objs:
        return []
    per_class = {c: sum(o.category == c for o in objs) for c in {o.category for o in objs}}
    usable = [i for i, o in enumerate(objs) if per_class[o.category] < 10]     # >= 10: VRSBench flag
    telling = [i for i in usable if _distinguishers(objs, i) != ["pos"] or not any(
        q.position == objs[i].position for j, q in enumerate(objs) if j != i and q.category == objs[i].category)]
    pool = telling or usable or list(range(len(objs)))
    k = min(len(pool), max_refs, int(rng.choice([1, 1, 1, 2, 2, 2, 3, 3, 4, 5])))
    chosen = sorted(int(i) for i in rng.choice(pool, size=k, replace=False))
    return [Referent(i, _sentence(objs, i, rng)) for i in chosen]


def _caption(scene: Scene, rng: np.random.Generator, dota: bool) -> str:
    counts: dict[str, list[SceneObject]] = {}
    for o in scene.objects:
        counts.setdefault(o.category, []).append(o)
    parts = []
    for cls, objs in sorted(counts.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        sing, plur = _NOUNS[cls][0]
        n = len(objs)
        parts.append(f"{_article(objs[0].colour)} {objs[0].colour} {sing}" if n == 1
                     else f"{_COUNT_WORDS.get(n, 'several')} {plur}")
    things = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    where = (" next to a stretch of water" if scene.water else " along a road" if scene.roads
             else " on open ground")
    source = _pick(rng, (" from GoogleEarth", "")) if dota else ""
    quality = _pick(rng, ("high-resolution ", "", "detailed "))
    return f"The {quality}aerial image{source} shows {things}{where}."


def _qa_pairs(scene: Scene, refs: list[Referent], rng: np.random.Generator,
              pool: Sequence[str]) -> list[dict]:
    """Two or three simple QA in VRSBench's per-image schema (ques_id is sometimes a str there)."""
    objs = scene.objects
    present = sorted({o.category for o in objs})
    cls = _pick(rng, present)
    qas = [("How many {} are visible in the image?".format(_NOUNS[cls][0][1]),
            str(sum(o.category == cls for o in objs)), "object quantity")]
    ref = refs[int(rng.integers(len(refs)))]
    o = objs[ref.index]
    qas.append((f"What color is the {_nouns(o, rng)[0]} {_pick(rng, _POSITION_PHRASES[o.position])}?",
                o.colour, "object color"))
    absent = [c for c in pool if c not in present]
    if absent and rng.random() < 0.7:
        qas.append((f"Is there {_article(_NOUNS[absent[0]][0][0])} {_NOUNS[absent[0]][0][0]} in the image?",
                    "No", "object existence"))
    as_str = rng.random() < 0.3
    return [{"ques_id": str(k) if as_str else k, "question": q, "answer": a, "type": t}
            for k, (q, a, t) in enumerate(qas, start=1)]
