"""One report in any format from results files: the inputs are read once, then a renderer per format.

A new format is one function `(ReportInputs) -> str` and one entry in RENDERERS; `report` and `merge` offer
every format listed there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from harness.report.beyond_table import beyond_rows, missing_prerequisites
from harness.report.claims import compare, read_claims
from harness.report.docs_table import build_docs_table, default_source
from harness.report.html.inputs import skipped_cells
from harness.results.baseline import BASELINE_DIR
from harness.results.merge import merge
from harness.results.observations import load_observations


@dataclass
class ReportInputs:
    """Everything a report shows: the merged observations of one source, its table, claims and what lies beyond."""

    paths: list[str]
    merged: Any
    source: str
    table: Any
    checks: list
    claims_path: str
    command: str
    baseline: str | None
    baselines: str

    @classmethod
    def read(cls, paths: list[str], source: str | None, claims_path: str, command: str,
             baseline: str | None = None, baselines: str = BASELINE_DIR) -> ReportInputs:
        """Read and merge the results files, build the docs' table and check the claims against it."""
        merged = merge(load_observations(paths))
        source = source or default_source(merged)
        table = build_docs_table(merged, source)
        return cls(paths, merged, source, table, compare(read_claims(claims_path), table), claims_path, command,
                   baseline, baselines)

    def cells(self) -> list[dict[str, Any]]:
        """The merged cells of this source."""
        return [obs.cell for obs in self.merged.observations() if obs.cell["source"] == self.source]

    def beyond(self):
        """What was measured outside the table's claims."""
        return beyond_rows(self.merged.observations(), self.source)

    def missing(self):
        """Backends skipped for a missing prerequisite."""
        return missing_prerequisites([cell for _, cell in skipped_cells(self.paths)], self.source)


def _markdown(inputs: ReportInputs) -> str:
    from harness.report.markdown import report_markdown

    return report_markdown(inputs.table, inputs.checks, inputs.claims_path, inputs.cells(), inputs.command,
                           inputs.beyond(), inputs.missing())


def _html(inputs: ReportInputs) -> str:
    from harness.report.html.inputs import baseline_checks
    from harness.report.html.page import report_html

    compared = baseline_checks(inputs.paths, inputs.merged, inputs.baseline, inputs.baselines) \
        if inputs.baseline else None
    return report_html(inputs.table, inputs.checks, inputs.claims_path, inputs.merged, inputs.source,
                       inputs.command, skipped=skipped_cells(inputs.paths), baseline=compared, results=inputs.paths)


def _json(inputs: ReportInputs) -> str:
    doc = {"generated_by": inputs.command, "table": inputs.table.to_json(),
           "claims": [c.to_json() for c in inputs.checks], "beyond_table": [row.to_json() for row in inputs.beyond()],
           "missing_prerequisites": inputs.missing(), "claims_source": inputs.claims_path,
           "flaky": inputs.merged.flaky}
    return json.dumps(doc, indent=1) + "\n"


RENDERERS: dict[str, Callable[[ReportInputs], str]] = {"markdown": _markdown, "html": _html, "json": _json}


def render(paths: list[str], fmt: str, source: str | None, claims_path: str, command: str, *,
           baseline: str | None = None, baselines: str = BASELINE_DIR) -> str:
    """The report text in one format (the HTML page also compares with `baseline` when given)."""
    return RENDERERS[fmt](ReportInputs.read(paths, source, claims_path, command, baseline, baselines))
