"""Read results, merged and baseline files into observations: (environment, cell) pairs, skipped cells left out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.results.results_json import read_results

# Environment fields a merged or baseline file stores per environment key.
ENV_FIELDS = ("torch", "transformers", "device", "compute_capability", "device_name")


@dataclass(frozen=True)
class Env:
    """What makes two observations of one cell comparable: torch, transformers, device kind, compute capability."""

    torch: str
    transformers: str | None
    device: str
    compute_capability: str | None = None
    device_name: str | None = None  # shown, not part of the key

    @property
    def key(self) -> str:
        """File-name-safe key, e.g. torch2.13.0-transformers5.17.0-cuda-sm90."""
        key = f"torch{_release(self.torch)}-transformers{self.transformers or 'none'}-{self.device}"
        if self.device == "cuda":
            key += f"-sm{(self.compute_capability or 'unknown').replace('.', '')}"
        return key

    @property
    def label(self) -> str:
        """Readable form for tables, e.g. `torch 2.13.0, transformers 5.17.0, cuda sm90 (NVIDIA H100)`."""
        device = self.device
        if self.device == "cuda":
            device = f"cuda sm{(self.compute_capability or '?').replace('.', '')}"
            if self.device_name:
                device += f" ({self.device_name})"
        return f"torch {_release(self.torch)}, transformers {self.transformers or 'none'}, {device}"

    @property
    def short(self) -> str:
        """Compact label for grid headers and footnotes, e.g. `torch 2.13.0 cpu`."""
        device = self.device if self.device != "cuda" else f"cuda sm{(self.compute_capability or '?').replace('.', '')}"
        return f"torch {_release(self.torch)} / tf {self.transformers or 'none'} / {device}"

    def to_json(self) -> dict[str, Any]:
        """The per-environment entry of a merged or baseline file."""
        return {field: getattr(self, field) for field in ENV_FIELDS}


@dataclass(frozen=True)
class Observation:
    """One measured cell in one environment, and the file it came from."""

    env: Env
    cell: dict[str, Any]
    origin: str

    @property
    def id(self) -> str:
        """The cell id."""
        return self.cell["id"]


def load_observations(paths: list[str]) -> list[Observation]:
    """Every measured (not skipped) cell of the given files, in file order then cell order."""
    if not paths:
        raise HarnessError("give at least one results file")
    observations: list[Observation] = []
    for path in paths:
        observations += observations_of(read_results(path), path)
    return observations


def observations_of(doc: dict[str, Any], path: str) -> list[Observation]:
    """Observations of one loaded document: a plain results file, or a merged/baseline file with per-cell env."""
    environments = doc.get("environments")
    out = []
    if environments is not None:  # merged or baseline: each cell names its environment key
        envs = _parse_environments(environments, path)
        for i, cell in enumerate(doc["cells"]):
            key = cell.get("env")
            if key not in envs:
                raise HarnessError(f"names environment {key!r}, which `environments` does not list", file=path,
                                   key=f"cells[{i}].env")
            if cell["status"] != "skipped":
                out.append(Observation(envs[key], cell, path))
        return out
    env = doc["environment"]
    if not isinstance(env, dict):
        raise HarnessError("must be an object", file=path, key="environment")
    for key in ("torch",):
        if not isinstance(env.get(key), str):
            raise HarnessError("missing or not a string", file=path, key=f"environment.{key}")
    for cell in doc["cells"]:
        if cell["status"] == "skipped":  # not run here: says nothing about the backend
            continue
        device = cell["device"]
        out.append(Observation(Env(env["torch"], env.get("transformers"), device,
                                   env.get("compute_capability") if device == "cuda" else None,
                                   env.get("device_name") if device == "cuda" else None), cell, path))
    return out


def environments_of(observations: list[Observation]) -> list[Env]:
    """Distinct environments, in a stable order (device, then torch, transformers, capability)."""
    envs = {obs.env.key: obs.env for obs in observations}
    return sorted(envs.values(), key=env_sort_key)


def env_sort_key(env: Env) -> tuple:
    """Sort environments: cpu before cuda, then by torch and transformers version (numerically), capability."""
    return (env.device, _version_tuple(env.torch), _version_tuple(env.transformers or ""),
            _version_tuple(env.compute_capability or ""))


def _parse_environments(environments: Any, path: str) -> dict[str, Env]:
    if not isinstance(environments, dict):
        raise HarnessError("must be an object of environment key -> environment", file=path, key="environments")
    envs = {}
    for key, value in environments.items():
        if not isinstance(value, dict) or not isinstance(value.get("torch"), str) or not value.get("device"):
            raise HarnessError("needs at least torch and device", file=path, key=f"environments.{key}")
        envs[key] = Env(**{field: value.get(field) for field in ENV_FIELDS})
    return envs


def _release(version: str) -> str:
    # 2.13.0+cpu and 2.13.0+cu128 behave alike on a given device: the local build tag is not part of the key.
    return version.split("+", 1)[0]


def _version_tuple(version: str) -> tuple:
    # (0, number) or (1, text) per part, so mixed parts never compare an int with a str.
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.+]", version) if part)
