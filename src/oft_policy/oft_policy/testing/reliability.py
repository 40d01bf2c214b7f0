"""Measured outcomes of the fault-injection tests: what docs/reliability.md is made from.

A fault test calls :func:`record_outcome` with the figures it measured (ticks to a
safe state, commands after the fault, data lost). When ``OFT_RELIABILITY_RESULTS``
names a directory, each outcome is written there as one JSON file; otherwise the
call only checks its arguments. ``scripts/reliability_page.py`` runs the fault tests
with that variable set and writes the page, so every row of the page is a figure a
test measured on the commit named there.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

RESULTS_ENV = "OFT_RELIABILITY_RESULTS"
FIGURE_CHARS = 160  # a figure in words (an error message) is cut to this length on the page


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.+-]+/)+")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _portable(value, limit: int = FIGURE_CHARS):
    """Text as the page shows it: on one line, absolute directories (a test's temporary files) cut to
    '.../', at most ``limit`` characters."""
    if isinstance(value, str):
        return " ".join(ABSOLUTE_PATH.sub(".../", value).split())[:limit]
    if isinstance(value, (list, tuple)):
        return [_portable(v, limit) for v in value]
    return value


def record_outcome(fault: str, outcome: str, **figures) -> dict:
    """One fault's measured result: ``outcome`` in words, ``figures`` as numbers or short strings."""
    if not fault or not outcome:
        raise ValueError("a fault and its outcome are both needed")
    for name, value in figures.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"figure {name} is {value}: measure it")
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    figures = {name: _portable(value) for name, value in figures.items()}
    record = {"fault": fault, "outcome": _portable(outcome, limit=None), "figures": figures, "test": test}
    directory = os.environ.get(RESULTS_ENV)
    if directory:
        path = Path(directory) / f"{_slug(fault)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    return record


def fault_tests(repo_root) -> list:
    """``path::test_name`` of every test function in the suite that calls record_outcome by that name
    (found by parsing; a test of this module calls it as ``reliability.record_outcome`` and is none)."""
    import ast

    root = Path(repo_root)
    found = []
    for path in sorted([*root.glob("tests/test_*.py"), *root.glob("src/*/test/test_*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and any(
                    isinstance(call, ast.Call) and getattr(call.func, "id", "") == "record_outcome"
                    for call in ast.walk(node)):
                found.append(f"{path.relative_to(root).as_posix()}::{node.name}")
    return found


def read_outcomes(directory) -> list:
    """The outcomes a run wrote into ``directory``, in page order (by test, then fault)."""
    records = [json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))]
    return sorted(records, key=lambda r: (r["test"], r["fault"]))
