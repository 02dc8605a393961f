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


def select(args, cells, capability, env, previous):
    """The cells `harness run` runs and the records it keeps; None (after saying why) when there is nothing to do.

    `args` holds the run's options (source, device, cell, keyword, shard, resume, last_failed, strict, out,
    matrix: `harness run`'s namespace); `previous` is the results document --resume/--last-failed start from.
    Every mistake is a HarnessError naming the option, raised before any cell runs.
    """

    sources = sorted({cell.source for cell in cells})
    for source in args.source:
        if source not in sources:
            raise HarnessError(f"no backend of source {source!r} in {args.matrix}", key="--source",
                               allowed=", ".join(sources))
    if "cuda" in args.device and capability is None:
        raise HarnessError("--device cuda asks for cells that cannot run: this machine has no CUDA device "
                           "(torch.cuda.is_available() is False)", key="--device")
    known = {cell.id for cell in cells}
    for cell_id in args.cell:
        if cell_id not in known:
            raise HarnessError(f"no cell with id {cell_id!r} in {args.matrix}", key="--cell")
    selected = [c for c in cells if (not args.source or c.source in args.source)
                and (not args.device or c.device in args.device) and (not args.cell or c.id in args.cell)]
    if not selected:
        raise HarnessError("--source, --device and --cell together match no cell", key="selection")
    if args.keyword and args.keyword.strip():
        match = keyword_matcher(args.keyword.strip())
        matching = [cell for cell in selected if match(cell.id)]
        if not matching:
            raise HarnessError(f"{args.keyword!r} matches none of the {len(selected)} selected cells (it matches "
                               "substrings of cell ids, e.g. reference-grouped_mm-default-bfloat16-fullgraph-cpu-"
                               "decode)", key="-k")
        selected = matching
    shard = args.shard
    if shard:
        index, count = parse_shard(shard)
        selected = selected[index - 1::count]
        if not selected:
            raise HarnessError(f"shard {shard} is empty: the selection has fewer than {index} cells", key="--shard")
    kept: list[dict[str, Any]] = []
    notes: list[str] = []  # printed by the plugin when the pytest session starts (not before a usage error)
    base_complete = True
    results_path = os.path.join(args.out, "results.json")
    if args.resume or args.last_failed:
        option = "--resume" if args.resume else "--last-failed"
        check_same_environment(previous, env, results_path, option)
    if args.resume:
        if (previous.get("shard") or None) != (shard or None):
            raise HarnessError(f"the run in {results_path} was shard {previous.get('shard') or '(none)'}: resume it "
                               f"with the same --shard", key="--resume")
        done = {cell["id"] for cell in previous["cells"]}
        kept = list(previous["cells"])
        remaining = [cell for cell in selected if cell.id not in done]
        if not remaining:
            print(f"nothing to resume: every selected cell already has a result in {results_path}")
            return None
        notes.append(f"resuming: {len(selected) - len(remaining)} of {len(selected)} cells already finished in "
                     f"{results_path}; running the other {len(remaining)}")
        selected = remaining
    elif args.last_failed:
        failed = set(failed_ids(previous, args.strict))
        rerun = [cell for cell in selected if cell.id in failed]
        gone = sorted(failed - known)
        if gone:
            notes.append(f"last-failed: {len(gone)} failed cell(s) of {results_path} are no longer in {args.matrix}: "
                         "kept as they are")
        if not rerun:
            print(f"last-failed: no failed cell to rerun ({len(failed)} failed in {results_path}"
                  f"{', none of them selected' if failed else ''}); nothing run, results left as they are")
            return None
        runnable = {cell.id for cell in rerun if cell.device != "cuda" or capability is not None}
        kept = [cell for cell in previous["cells"] if cell["id"] not in runnable]
        base_complete = bool(previous.get("complete"))
        shard = shard or previous.get("shard")
        notes.append(f"last-failed: rerunning {len(runnable)} failed cell(s) of {results_path}; its other "
                     f"{len(kept)} cell(s) are kept")
        selected = rerun
    runnable = [cell for cell in selected if cell.device != "cuda" or capability is not None]
    unrunnable = [cell for cell in selected if cell not in runnable]
    if not runnable:
        raise HarnessError(f"all {len(selected)} selected cells are cuda cells and this machine has no CUDA device: "
                           "nothing would run (select cpu cells, or run on a GPU machine)", key="selection")
    if unrunnable and not args.last_failed:  # --last-failed keeps their earlier records instead
        notes.append(f"{len(unrunnable)} cuda cells deselected: no GPU (results.json records them as skipped, "
                     "not_applicable)")
    return Selection(run=runnable, not_run=[] if args.last_failed else unrunnable, kept=kept,
                     base_complete=base_complete, shard=shard, notes=notes)
