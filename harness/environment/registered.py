"""Which experts implementations the transformers under test registers, found without importing it.

`ExpertsInterface._global_mapping` in `transformers/integrations/moe.py` lists them; reading that file's
syntax tree answers in milliseconds where `import transformers.integrations.moe` would import torch (the
controller and the xdist workers never do on a machine without GPU). `eager` is always there: it is the
experts class's own forward, not an interface entry.
"""

from __future__ import annotations

import ast
import functools
import os

from harness.environment import transformers_src

MOE_FILE = os.path.join("integrations", "moe.py")
# The implementations the documentation's support table covers, in its row order (grouped_mm first).
DOCUMENTED = ("grouped_mm", "batched_mm", "eager")


def registered_keys() -> tuple[str, ...] | None:
    """`eager` plus ExpertsInterface's keys in file order; None when transformers (or its interface) is absent."""
    folder = transformers_src.package_dir()
    if folder is None:
        return None
    return keys_in(os.path.join(folder, MOE_FILE))


@functools.lru_cache(maxsize=None)
def keys_in(path: str) -> tuple[str, ...] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None  # a release without the experts interface
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "ExpertsInterface":
            for item in node.body:
                if (isinstance(item, ast.Assign) and any(getattr(t, "id", None) == "_global_mapping"
                                                         for t in item.targets)
                        and isinstance(item.value, ast.Dict)):
                    keys = [k.value for k in item.value.keys if isinstance(k, ast.Constant)]
                    return ("eager", *(k for k in keys if isinstance(k, str) and k != "eager"))
    return None
