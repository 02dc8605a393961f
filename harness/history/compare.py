"""Compare two sweeps: the statuses of every cell in every (torch, release) pair both have."""

from __future__ import annotations

import glob
import json
import os


def statuses(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """(torch folder, release folder) -> {cell id: status} of a sweep folder."""
    found = {}
    for path in glob.glob(os.path.join(out, "torch-*", "transformers-*", "results.json")):
        pair = (os.path.basename(os.path.dirname(os.path.dirname(path))), os.path.basename(os.path.dirname(path)))
        with open(path, encoding="utf-8") as fh:
            found[pair] = {cell["id"]: cell["status"] for cell in json.load(fh).get("cells", [])}
    return found


def compare(out: str, other: str, releases: list[str] | None = None) -> list[str]:
    """One line per difference between the sweeps in `out` and `other` (pairs both have; `releases` only)."""
    mine, theirs = statuses(out), statuses(other)
    lines = []
    common = sorted(set(mine) & set(theirs))
    if releases is not None:
        common = [pair for pair in common if pair[1][len("transformers-"):] in releases]
    if not common:
        return [f"no (torch, release) pair in both {out} and {other}"]
    for pair in common:
        for cell_id in sorted(set(mine[pair]) | set(theirs[pair])):
            a, b = mine[pair].get(cell_id, "absent"), theirs[pair].get(cell_id, "absent")
            if a != b:
                lines.append(f"{pair[0]}/{pair[1]}: {cell_id}: {a} here, {b} in {other}")
    return lines
