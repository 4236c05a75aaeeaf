"""The examples in docstrings are true: every package module that holds one runs under doctest."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "risbench_builder"
MODULES = sorted(
    ".".join(("risbench_builder", *f.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for f in PACKAGE.rglob("*.py") if ">>> " in f.read_text(encoding="utf-8"))


def test_the_examples_are_found() -> None:
    assert len(MODULES) >= 20 and "risbench_builder.masks" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see output above)"
