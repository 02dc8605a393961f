"""Carry several transformers wheels to an offline machine in little space (`history --envs-kind inherited`).

A transformers wheel is ~13 MB and consecutive releases share most of their files, but a zip compresses each file
on its own. `pack` writes the wheels' members into one tar.xz with every path's copies side by side (release after
release), so a file that did not change costs almost nothing: four releases (5.21.1-5.24.0, 52 MB of wheels) make
4.4 MB. `unpack` zips each release's members back into `transformers-X-py3-none-any.whl`, in the original order and
with the original bytes, so the wheel's RECORD hashes hold and pip installs it as the original (the zip container
itself is not byte-identical).

  python3 -m harness.history.wheels pack OUT.tar.xz WHEEL...     # here, after pip download --no-deps
  python3 -m harness.history.wheels unpack IN.tar.xz DIR         # there; then --wheels DIR
"""

from __future__ import annotations

import io
import lzma
import os
import sys
import tarfile
import zipfile

_ORDER = ".members"  # per wheel: its member names in zip order, one a line


def pack(out: str, wheels: list[str]) -> None:
    """Write the wheels' members into `out` (tar.xz), each path's copies next to each other."""
    zips = {os.path.basename(path): zipfile.ZipFile(path) for path in wheels}
    try:
        names = sorted({name for zf in zips.values() for name in zf.namelist()})
        with tarfile.open(out, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
            for name in names:
                for wheel, zf in zips.items():
                    if name in zf.NameToInfo:
                        _add(tar, f"{wheel}/{name}", zf.read(name))
            for wheel, zf in zips.items():
                _add(tar, wheel + _ORDER, "\n".join(zf.namelist()).encode())
    finally:
        for zf in zips.values():
            zf.close()


def unpack(src: str, folder: str) -> list[str]:
    """Rebuild every wheel packed in `src` inside `folder`; their paths."""
    os.makedirs(folder, exist_ok=True)
    members: dict[str, dict[str, bytes]] = {}
    orders: dict[str, list[str]] = {}
    with tarfile.open(src, "r:xz") as tar:
        for info in tar:
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            if info.name.endswith(_ORDER):
                orders[info.name[:-len(_ORDER)]] = data.decode().split("\n")
            else:
                wheel, _, name = info.name.partition("/")
                members.setdefault(wheel, {})[name] = data
    paths = []
    for wheel, order in orders.items():
        if os.path.basename(wheel) != wheel or not wheel.endswith(".whl"):
            raise ValueError(f"{src}: not a wheel name: {wheel!r}")
        path = os.path.join(folder, wheel)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in order:
                zf.writestr(name, members[wheel][name])
        paths.append(path)
    return paths


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "pack":
        pack(argv[1], argv[2:])
        return 0
    if len(argv) == 3 and argv[0] == "unpack":
        print("\n".join(unpack(argv[1], argv[2])))
        return 0
    print(__doc__.strip().splitlines()[-2].strip() + "\n" + __doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
