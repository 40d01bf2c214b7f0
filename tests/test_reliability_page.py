"""docs/reliability.md is made by the fault tests: every row names one, and every one has a row."""

import re
from pathlib import Path

from oft_policy.testing import reliability
from oft_policy.testing.reliability import fault_tests

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (?P<fault>[^|]+) \| (?P<outcome>[^|]+) \| (?P<measured>[^|]+) \| `(?P<test>[^`]+)` \|$")


def _rows():
    return [m.groupdict() for m in map(ROW.match, (ROOT / "docs" / "reliability.md").read_text().splitlines()) if m]


def test_every_row_is_measured_by_a_fault_test_and_every_fault_test_has_a_row():
    tests = {f"{Path(path).name}::{name}" for path, _, name in (t.partition("::") for t in fault_tests(ROOT))}
    rows = _rows()
    assert len(tests) >= 10 and rows
    named = {row["test"] for row in rows}
    assert named <= tests, f"rows name tests that record no outcome: {sorted(named - tests)}"
    assert tests <= named, f"fault tests without a row (run scripts/reliability_page.py): {sorted(tests - named)}"
    assert all(row["measured"].strip() for row in rows)


def test_an_outcome_needs_a_fault_its_words_and_measured_figures(monkeypatch):
    monkeypatch.delenv(reliability.RESULTS_ENV, raising=False)  # not a row of the page
    record = reliability.record_outcome("A fault", "what happened", lost_s=0.25, where="/tmp/x/y/file.bag")
    assert record["figures"] == {"lost_s": 0.25, "where": ".../file.bag"}
    for bad in (lambda: reliability.record_outcome("", "x"),
                lambda: reliability.record_outcome("f", "x", lost_s=float("nan"))):
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("accepted an outcome without its fault or with an unmeasured figure")
