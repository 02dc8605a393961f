"""Paths as results should store them: relative to the checkout, an import root or a labelled folder, never absolute.

A results file travels (CI artifacts, reports committed from GPU machines, merges across machines), so it
must not depend on where the producing machine keeps things. Every absolute path is written relative to the
deepest folder it lies in, among:

- site-packages / dist-packages, PYTHONPATH entries, the standard library: plain (`transformers/integrations/moe.py`,
  `torch/_dynamo/utils.py`, `contextlib.py`);
- this checkout (the harness's repository), the working directory: plain (`backends/reference.py`, `matrix.yaml`);
- the `--transformers-src` tree: `<transformers-src>/transformers/...`;
- the Python installation (sys.prefix, base_prefix): `<python>/bin/python3`;
- the temporary folder (tempfile.gettempdir(), /tmp): `<tmp>/torchinductor_me/...`;
- the home folder: `~/src/...`.

The folder itself is written as its label (`<checkout>`, `<site-packages>`, `<cwd>`, ...). An absolute path in
none of them keeps its last three parts after `<elsewhere>/`.
"""

from __future__ import annotations

import functools
import os
import re
import site
import sys
import sysconfig
import tempfile
from typing import Any, NamedTuple

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSFORMERS_SRC_ENV = "HARNESS_TRANSFORMERS_SRC"  # = transformers_src.ENV_VAR (kept import-free here)


class _Root(NamedTuple):
    folder: str  # absolute, normalised, no trailing separator
    label: str  # how the folder itself is written
    plain: bool  # children are written without the label (importable / checkout-relative paths)


def portable_path(path: str) -> str:
    """`path` without this machine's absolute prefix (see the module docstring); relative paths are kept."""
    if not path or not os.path.isabs(path):
        return path
    normal = os.path.normpath(path)
    for candidate in dict.fromkeys((normal, os.path.realpath(normal))):
        for root in _roots():
            if candidate == root.folder:
                return root.label
            if candidate.startswith(root.folder + os.sep):
                rest = candidate[len(root.folder) + 1:]
                return rest if root.plain else f"{root.label}/{rest}"
    parts = [part for part in normal.split(os.sep) if part]
    return "<elsewhere>/" + "/".join(parts[-3:])


def portable_text(text: str) -> str:
    """`text` with every absolute path under a known folder rewritten as portable_path writes it."""
    if not text or "/" not in text:
        return text
    pattern, by_folder = _text_pattern()
    if pattern is None:
        return text

    def replace(match: re.Match) -> str:
        root = by_folder[match.group(1)]
        if not match.group(2):
            return root.label
        return "" if root.plain else root.label + "/"

    return _CUT_PATH.sub(lambda m: "<path cut>" if _is_cut_root(m.group(1)) else m.group(0), pattern.sub(replace, text))


# An absolute path cut short by a length limit ("/work/ven"): a strict prefix of a known folder, so it cannot
# be rewritten like a whole one; it is replaced, never left to name this machine's folders.
_CUT_PATH = re.compile(r"(?<![\w.~/<>-])(/[\w.-]+(?:/[\w.-]*)*)(?![\w/.-])")


def _is_cut_root(fragment: str) -> bool:
    return any(root.folder.startswith(fragment) and root.folder != fragment and len(fragment) > 1
               for root in _roots())


def portable_json(value: Any) -> Any:
    """A copy of a JSON-like value with portable_text applied to every string in it (keys included)."""
    if isinstance(value, str):
        return portable_text(value)
    if isinstance(value, dict):
        return {portable_text(key) if isinstance(key, str) else key: portable_json(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_json(item) for item in value]
    return value


def local_path(path: str) -> str:
    """The inverse of portable_path on this machine: `<tmp>/x` -> /tmp/x, `~/x` -> $HOME/x; other paths as given."""
    label, sep, rest = path.partition("/")
    folders = {"<tmp>": tempfile.gettempdir(), "~": os.path.expanduser("~"), "<python>": sys.prefix,
               "<transformers-src>": os.environ.get(TRANSFORMERS_SRC_ENV) or None, "<checkout>": CHECKOUT}
    folder = folders.get(label)
    if folder is None:
        return path
    return os.path.join(folder, rest) if sep else folder


def _roots() -> tuple[_Root, ...]:
    """Known folders, deepest first (so the most specific one wins), in both spelled and resolved form."""
    return _roots_for(os.getcwd(), os.environ.get(TRANSFORMERS_SRC_ENV) or "")


@functools.lru_cache(maxsize=8)
def _roots_for(cwd: str, transformers_src: str) -> tuple[_Root, ...]:
    found: dict[str, _Root] = {}

    def add(folder: str | None, label: str, plain: bool) -> None:
        if not folder or not os.path.isabs(folder):
            return
        for spelled in (os.path.normpath(folder), os.path.realpath(folder)):
            if spelled != os.sep and spelled not in found:
                found[spelled] = _Root(spelled, label, plain)

    # Import roots first: where a folder is also e.g. inside the checkout, its own role wins at equal depth.
    site_dirs = list(getattr(site, "getsitepackages", lambda: [])())
    site_dirs.append(getattr(site, "getusersitepackages", lambda: None)())
    site_dirs += [sysconfig.get_paths().get(key) for key in ("purelib", "platlib")]
    site_dirs += [entry for entry in sys.path if os.path.basename(entry) in ("site-packages", "dist-packages")]
    for folder in site_dirs:
        add(folder, "<site-packages>", True)
    for key in ("stdlib", "platstdlib"):
        add(sysconfig.get_paths().get(key), "<stdlib>", True)
    add(transformers_src, "<transformers-src>", False)
    add(CHECKOUT, "<checkout>", True)
    add(cwd, "<cwd>", True)
    # Import roots on PYTHONPATH (e.g. `pip install --target DIR` on a GPU machine whose image has another
    # transformers): their packages are written as importable paths, like site-packages'.
    for folder in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        add(folder, "<site-packages>", True)
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        add(prefix, "<python>", False)
    add(tempfile.gettempdir(), "<tmp>", False)
    add("/tmp", "<tmp>", False)
    add(os.path.expanduser("~"), "~", False)
    return tuple(sorted(found.values(), key=lambda root: -len(root.folder)))


def _text_pattern() -> tuple[re.Pattern | None, dict[str, _Root]]:
    roots = _roots()
    return _compile(roots), {root.folder: root for root in roots}


@functools.lru_cache(maxsize=8)
def _compile(roots: tuple[_Root, ...]) -> re.Pattern | None:
    if not roots:
        return None
    # A folder counts only as a whole path: not inside a longer name or a URL (https://host/tmp/...), and
    # followed by a separator or by something that cannot continue a file name.
    alternatives = "|".join(re.escape(root.folder) for root in roots)  # deepest first: the longest match wins
    return re.compile(rf"(?<![\w.~/-])({alternatives})(?:(/)|(?![\w.-]))")
