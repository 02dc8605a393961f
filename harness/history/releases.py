"""Which transformers releases a sweep covers: a list, a range, or every 5.x release with the experts interface.

Every 5.x release ships `transformers/integrations/moe.py` with `ExpertsInterface` (checked in the wheels of all 44
releases 5.0.0-5.24.0: grouped_mm and batched_mm since 5.0.0, sonicmoe since 5.7.0, deepgemm since 5.10.1); the
4.x releases do not. The releases themselves come from the package index (`pip index versions transformers`),
asked once per sweep; a sweep given explicit versions does not ask.
"""

from __future__ import annotations

import re
import subprocess
import sys

from harness.errors import HarnessError

FIRST_WITH_INTERFACE = "5.0.0"  # the first release whose integrations/moe.py defines ExpertsInterface
_RELEASE = re.compile(r"^\d+(\.\d+){1,3}$")  # final releases only: no rc, dev, post


def key(version: str) -> tuple[int, ...]:
    """Sort key of a final release number: 5.10.1 after 5.9.0."""
    return tuple(int(part) for part in version.split("."))


def is_release(version: str) -> bool:
    """True for a final release number (5.3.0), false for pre-releases (5.3.0rc1) and junk."""
    return bool(_RELEASE.match(version))


def index_versions(package: str = "transformers", python: str | None = None) -> list[str]:
    """Every final release of `package` on the package index, oldest first (one `pip index versions` call)."""
    proc = subprocess.run([python or sys.executable, "-m", "pip", "index", "versions", package,
                           "--disable-pip-version-check"], capture_output=True, text=True, check=False)
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    if proc.returncode != 0 or not match:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HarnessError(f"cannot list {package} releases from the package index ({tail[0]}); name the "
                           "releases instead, e.g. `python -m harness history 5.3.0 5.4.0`", key="releases")
    return sorted((v.strip() for v in match.group(1).split(",") if is_release(v.strip())), key=key)


def default_releases(available: list[str]) -> list[str]:
    """Every 5.x release with the experts interface, up to the newest."""
    return [v for v in available if key(v)[0] == 5 and key(v) >= key(FIRST_WITH_INTERFACE)]


def latest_patches(versions: list[str]) -> list[str]:
    """The newest patch release of every minor version (5.5.4 of 5.5.0-5.5.4)."""
    newest: dict[tuple[int, ...], str] = {}
    for version in sorted(versions, key=key):
        newest[key(version)[:2]] = version
    return sorted(newest.values(), key=key)


def select(specs: list[str], available_fn=index_versions) -> list[str]:
    """Releases named by `specs`: versions (5.3.0), ranges (5.3.0..5.6.2, either end optional), or none (default).

    Lists need no index; a range or the default asks the index once (`available_fn`)."""
    items = [part for spec in specs for part in re.split(r"[,\s]+", spec) if part]
    if items and all(".." not in item for item in items):
        for item in items:
            if not is_release(item):
                raise HarnessError(f"not a release number: {item!r}", key="releases",
                                   allowed="X.Y.Z, a range X.Y.Z..X.Y.Z, or nothing for every 5.x release")
        return sorted(dict.fromkeys(items), key=key)
    available = available_fn()
    if not items:
        return default_releases(available)
    chosen: list[str] = []
    for item in items:
        if ".." in item:
            low, _, high = item.partition("..")
            for end in (low, high):
                if end and not is_release(end):
                    raise HarnessError(f"not a release number: {end!r} in {item!r}", key="releases")
            chosen += [v for v in available if (not low or key(v) >= key(low)) and (not high or key(v) <= key(high))]
        elif is_release(item):
            chosen.append(item)
        else:
            raise HarnessError(f"not a release number: {item!r}", key="releases")
    if not chosen:
        raise HarnessError(f"{' '.join(items)} matches no release on the package index", key="releases")
    return sorted(dict.fromkeys(chosen), key=key)
