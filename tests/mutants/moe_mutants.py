"""Deliberately broken copies of transformers' integrations/moe.py, and a source tree to test each with.

`make_tree(dest, name)` builds DEST/transformers as a symlink copy of the installed package in which only
integrations/moe.py is a patched file, so `python -m harness run --transformers-src DEST` tests the
mutant. Each mutant names the cells it must turn into regressions (`bites`); everything else must keep
its verdict. Patches are text edits inside one function, checked to apply exactly once, so they work on
every transformers version that still has that code (5.17 and 5.23 here).

    python -m tests.mutants.moe_mutants make batched_data_dependent /tmp/mutant-src
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Mutant:
    """One break: where (function), what (anchor -> replacement), and which cells it must fail, and how."""

    name: str
    description: str
    function: str
    anchor: str
    replacement: str
    bites: Callable[[dict[str, Any]], bool]  # cell record -> must become a regression
    status: str  # the status those cells must get


def _compiled(cell: dict[str, Any]) -> bool:
    return cell["mode"] != "uncompiled"


MUTANTS = {mutant.name: mutant for mutant in (
    Mutant("batched_data_dependent",
           "batched_mm branches on a tensor value: a graph break, fatal only under fullgraph=True",
           "batched_mm_experts_forward",
           "    expert_ids = top_k_index.reshape(-1)  # (S,)\n",
           "    expert_ids = top_k_index.reshape(-1)  # (S,)\n"
           "    if expert_ids.max() >= 0:  # MUTANT: data-dependent branch\n"
           "        selected_hidden_states = selected_hidden_states * 1.0\n",
           lambda c: c["source"] == "transformers" and c["backend"] == "batched_mm" and _compiled(c) and c["fullgraph"] is True,
           "compile_error"),
    # 1 % is above the float32 (1e-4) and float16 (5e-3) tolerances and below bfloat16's (3e-2): a
    # bfloat16 cell cannot tell a 1 % error from rounding, so only float32/float16 cells may fail.
    Mutant("grouped_numeric_1pct",
           "grouped_mm's output is 1 % too large",
           "grouped_mm_experts_forward",
           "    return final_hidden_states.to(hidden_states.dtype)\n",
           "    final_hidden_states = final_hidden_states * 1.01  # MUTANT: 1 % numeric error\n"
           "    return final_hidden_states.to(hidden_states.dtype)\n",
           lambda c: c["source"] == "transformers" and c["backend"] == "grouped_mm" and c["dtype"] in ("float32", "float16"),
           "mismatch"),
    # The fallback runs where the native kernel cannot: under compile for non-bfloat16 weights (CPU
    # torch > 2.10 runs the native kernel uncompiled), so only compiled float16 cells may fail.
    Mutant("fallback_raises_float16",
           "the grouped_mm fallback custom op raises for float16",
           "_grouped_mm_fallback",
           "    output = torch.zeros(input.size(0), weight.size(2)",
           "    if input.dtype == torch.float16:  # MUTANT: fallback broken for one dtype\n"
           "        raise RuntimeError('MUTANT: grouped_mm fallback does not support float16')\n"
           "    output = torch.zeros(input.size(0), weight.size(2)",
           lambda c: c["source"] == "transformers" and c["backend"] == "grouped_mm" and c["dtype"] == "float16" and _compiled(c),
           "runtime_error"),
)}


def installed_package() -> str:
    """Folder of the installed transformers package (without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("transformers is not installed")
    return os.path.abspath(list(spec.submodule_search_locations)[0])


def patch_source(source: str, mutant: Mutant) -> str:
    """moe.py source with the mutant applied; ValueError when its anchor is not exactly once in the function."""
    start, end = _function_span(source, mutant.function)
    body = source[start:end]
    if body.count(mutant.anchor) != 1:
        raise ValueError(f"mutant {mutant.name}: anchor found {body.count(mutant.anchor)} times in "
                         f"{mutant.function} (this transformers version changed the code)")
    return source[:start] + body.replace(mutant.anchor, mutant.replacement) + source[end:]


def make_tree(dest: str, name: str, package: str | None = None) -> str:
    """DEST/transformers: symlinks to `package` (default: installed) with a mutated integrations/moe.py."""
    package = package or installed_package()
    mutant = MUTANTS[name]
    with open(os.path.join(package, "integrations", "moe.py"), encoding="utf-8") as fh:
        patched = patch_source(fh.read(), mutant)
    root = os.path.join(dest, "transformers")
    _link_dir(package, root, skip={"integrations"})
    _link_dir(os.path.join(package, "integrations"), os.path.join(root, "integrations"), skip={"moe.py"})
    with open(os.path.join(root, "integrations", "moe.py"), "w", encoding="utf-8") as fh:
        fh.write(patched)
    return dest


def _link_dir(src: str, dst: str, skip: set[str]) -> None:
    """A real folder `dst` of symlinks to `src`'s entries; no __pycache__ (bytecode of the copy stays in the copy)."""
    os.makedirs(dst, exist_ok=True)
    for entry in os.listdir(src):
        if entry in skip or entry == "__pycache__":
            continue
        os.symlink(os.path.join(src, entry), os.path.join(dst, entry))


def _function_span(source: str, function: str) -> tuple[int, int]:
    """Character span of a top-level `def function(...)` up to the next top-level statement."""
    match = re.search(rf"^def {re.escape(function)}\(", source, re.MULTILINE)
    if match is None:
        raise ValueError(f"no top-level function {function} in moe.py")
    following = re.compile(r"^(?=[^\s#)])", re.MULTILINE)
    # Skip the signature (its closing line starts at column 0 with ')' in black style) and the body.
    end = following.search(source, match.end())
    return match.start(), end.start() if end else len(source)


def main(argv: list[str]) -> int:
    """`make NAME DEST`: build a mutant tree; `list`: show the mutants."""
    if argv[:1] == ["list"]:
        for mutant in MUTANTS.values():
            print(f"{mutant.name}: {mutant.description}")
        return 0
    if len(argv) == 3 and argv[0] == "make" and argv[1] in MUTANTS:
        print(make_tree(argv[2], argv[1]))
        return 0
    print(f"usage: python -m tests.mutants.moe_mutants list | make {{{','.join(MUTANTS)}}} DEST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
