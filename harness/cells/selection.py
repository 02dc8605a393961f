"""Which cells `harness run` runs, decided before any cell runs, and handed to the pytest plugin as one file.

The order of the filters: `--source`, `--device`, `--cell`, then `-k`, then `--shard` (so every shard of a
resumed run is the shard it was), then `--resume` (drop the finished cells) or `--last-failed` (keep only the
failed ones), then the cells this machine cannot run (cuda cells without a GPU) are set aside and recorded as
not run instead of becoming pytest items.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.errors import HarnessError

SELECTION_FILE = "selection.json"  # in <out>/logs/
# --last-failed reruns these: what failed the run (regression, flaky) and whatever died or hung.
FAILED_VERDICTS = ("regression", "flaky")
FAILED_STATUSES = ("crash", "timeout")
# Environment fields that must agree for a run to add cells to an earlier results.json.
SAME_ENVIRONMENT = ("torch", "transformers")


def keyword_matcher(expression: str) -> Callable[[str], bool]:
    """`-k`: pytest's expression syntax (and, or, not, parentheses), each word a case-insensitive substring of
    the cell id. Only the id is matched: an axis value the id leaves out (the usual layout `default`, scope
    `kernel`, phase `inference`) is not a keyword, so `-k default` means the compile mode `default`
    (torch.compile's mode=None), and `-k "not default"` everything else."""
    from _pytest.mark.expression import Expression

    try:
        compiled = Expression.compile(expression)
    except Exception as exc:  # SyntaxError (pytest >= 8.4) or ParseError (older): both carry a column and a message
        column = getattr(exc, "offset", None) or getattr(exc, "column", "?")
        message = getattr(exc, "msg", None) or getattr(exc, "message", None) or str(exc)
        raise HarnessError(f"not a valid expression {expression!r}: at column {column}: {message} "
                           "(pytest -k syntax: words, and, or, not, parentheses)", key="-k") from None

    def match(cell_id: str) -> bool:
        lowered = cell_id.lower()

        def name_matches(name: str, /, **kwargs: Any) -> bool:
            if kwargs:
                raise HarnessError(f"{expression!r}: call parameters (name(key=value)) are not supported", key="-k")
            return name.lower() in lowered

        return bool(compiled.evaluate(name_matches))

    return match


def parse_shard(value: str) -> tuple[int, int]:
    """`I/N` with 1 <= I <= N."""
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise HarnessError(f"must look like I/N (e.g. 1/4), got {value!r}", key="--shard") from None
    if count < 1:
        raise HarnessError(f"the number of shards must be at least 1, got {value!r}", key="--shard")
    if not 1 <= index <= count:
        raise HarnessError(f"shard index must be between 1 and {count}, got {value!r}", key="--shard")
    return index, count


def failed_ids(doc: dict[str, Any], strict: bool) -> list[str]:
    """Cells of an earlier run that `--last-failed` reruns (with `strict`, unexpected passes too)."""
    verdicts = FAILED_VERDICTS + (("unexpected_pass",) if strict else ())
    return [cell["id"] for cell in doc["cells"]
            if cell["verdict"] in verdicts or cell["status"] in FAILED_STATUSES]


def check_same_environment(previous: dict[str, Any], current: dict[str, Any], path: str, option: str) -> None:
    """Adding cells to an earlier results.json mixes two runs: only when they measured the same environment."""
    before = previous.get("environment") or {}
    for key in SAME_ENVIRONMENT:
        if before.get(key) != current.get(key):
            raise HarnessError(f"was measured with {key} {before.get(key)!r}, this run has {current.get(key)!r}: "
                               f"its cells cannot be merged with this run's (run without {option}, or use another "
                               "--out)", file=path, key=f"environment.{key}")


@dataclass
class Selection:
    """The outcome of the selection: what runs, what is recorded without running, what is kept."""

    run: list[Any]  # cells (harness.cells.cell.Cell) that become pytest items
    not_run: list[Any] = field(default_factory=list)  # cuda cells on a machine without a GPU
    kept: list[dict[str, Any]] = field(default_factory=list)  # records of an earlier run that stay
    base_complete: bool = True  # the merged results.json is complete once this run completes
    shard: str | None = None
    notes: list[str] = field(default_factory=list)  # lines the controller prints as the session starts

    def write(self, out: str, *, environment: dict[str, Any], not_run_records: list[dict[str, Any]]) -> str:
        """The file the plugin reads (workers: `run`; the controller: the rest); returns its path."""
        folder = os.path.join(out, "logs")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, SELECTION_FILE)
        doc = {"run": [cell.id for cell in self.run], "not_run": not_run_records, "kept": self.kept,
               "base_complete": self.base_complete, "shard": self.shard, "environment": environment,
               "notes": self.notes}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, default=str)
        return path


def read_selection(path: str) -> dict[str, Any]:
    """The selection file written by `Selection.write`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
