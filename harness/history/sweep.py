"""The release sweep: for every (torch, transformers release) pair, its environment, then one slice of the matrix.

Layout of the output folder:
  OUT/sweep.json                                   what ran: per pair the environment, timings, exit code
  OUT/torch-2.13.0/transformers-5.3.0/results.json  the pair's `harness run` results (plus junit.xml, logs/)
  OUT/torch-2.13.0/transformers-5.3.0/pip-freeze.txt
Resumable: a pair whose results.json is complete is not run again; an interrupted one continues with `--resume`;
environments are cached (harness/history/envs.py). Every pair's run uses one inductor cache folder
(TORCHINDUCTOR_CACHE_DIR), so graphs compiled for one release are reused by the next when they are the same, and
one Python bytecode cache (PYTHONPYCACHEPREFIX, PYTHONDONTWRITEBYTECODE lifted for the runs): the environments are
installed without bytecode (pip --no-compile), so where PYTHONDONTWRITEBYTECODE is set every process of every run
compiled torch's, sympy's and transformers' sources again (measured: a warm run of the 12-cell slice 15 s without,
7 s with). Each pair's entry counts the graphs its run compiled (new FX graph and AOTAutograd cache entries): 0
when every graph was reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.history import envs as history_envs
from harness.errors import EXIT_INTERRUPTED, HarnessError
from harness.portable import CHECKOUT, portable_text
from harness.results.results_json import atomic_write_json


SWEEP_FILE = "sweep.json"
CACHE_KINDS = ("fxgraph", "aotautograd")  # TORCHINDUCTOR_CACHE_DIR's FX graph and AOTAutograd caches
DEFAULT_KEYWORD = "not model and not training"  # kernel inference cells (scope/phase show in the id when not usual)


@dataclass
class SweepConfig:
    """What to sweep and where."""

    releases: list[str]
    torches: list[str]
    out: str
    envs: str
    inductor_cache: str
    run_args: list[str]  # the slice: arguments for `python -m harness run`
    cells: list[str] = field(default_factory=list)  # --cell ids, filtered per release by its registered backends
    workers: str = "2"
    envs_kind: str = "shared-torch"
    wheels: str | None = None  # --envs-kind inherited: the folder of transformers wheels
    env_vars: dict[str, str] = field(default_factory=dict)  # extra environment for the runs (bench: TMPDIR)
    pycache: str | None = None  # PYTHONPYCACHEPREFIX of the runs (None: the caller's bytecode settings)


def pair_dir(out: str, torch: str, release: str) -> str:
    """The output folder of one (torch, release) pair."""
    return os.path.join(out, f"torch-{torch}", f"transformers-{release}")


def default_device() -> str:
    """The device at hand: cuda where a GPU device node exists and torch sees it, else cpu."""
    from harness.environment.machine import gpu_impossible

    if gpu_impossible():
        return "cpu"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
        return "cuda" if out.returncode == 0 and "GPU" in out.stdout else "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def read_sweep(out: str) -> dict[str, Any]:
    """OUT/sweep.json, or an empty record."""
    try:
        with open(os.path.join(out, SWEEP_FILE), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {"schema": 1, "pairs": {}}


def say(message: str) -> None:
    """Progress line, flushed (a sweep's output is usually a log file)."""
    print(message, flush=True)


def sweep(config: SweepConfig, log: Callable[[str], None] = say) -> int:
    """Run every pair; 0 when every pair finished (whatever its cells did), 130 when interrupted."""
    os.makedirs(config.out, exist_ok=True)
    record = read_sweep(config.out)
    pairs = [(torch, release) for torch in config.torches for release in config.releases]
    with ThreadPoolExecutor(max_workers=1) as builder:  # builds the next pair's environment during this run
        for index, (torch, release) in enumerate(pairs):
            if index + 1 < len(pairs):
                _prefetch(builder, config, *pairs[index + 1])
            name = f"torch {torch} / transformers {release}"
            entry = run_pair(config, torch, release, log)
            record["pairs"][f"{torch}/{release}"] = entry
            atomic_write_json(os.path.join(config.out, SWEEP_FILE), record)
            compiled = (entry.get("compiled") or {}).get("fxgraph")
            log(f"{name}: {entry['state']} ({entry.get('cells', 0)} cells, env {entry.get('env_build_s', 0):.0f} s, "
                f"run {entry.get('run_s', 0):.0f} s" + (f", {compiled} graphs compiled)" if compiled is not None
                                                          else ")"))
            if entry["state"] == "interrupted":
                log(f"interrupted: rerun the same command to continue (finished pairs are kept in {config.out})")
                builder.shutdown(cancel_futures=True)
                return EXIT_INTERRUPTED
    return 0


_PREFETCHED: dict[tuple[str, str, str], Future] = {}


def _prefetch(builder: ThreadPoolExecutor, config: SweepConfig, torch: str, release: str) -> None:
    """Start building a later pair's environment (errors surface when that pair asks for it)."""
    if _results_state(os.path.join(pair_dir(config.out, torch, release), "results.json")) == "complete":
        return
    _PREFETCHED[(config.envs, torch, release)] = builder.submit(
        history_envs.ensure, config.envs, torch, release, config.envs_kind, None, wheels=config.wheels)


def _environment(config: SweepConfig, torch: str, release: str, log) -> history_envs.Env:
    """The pair's environment: the prefetched one when its build has been started, else built now."""
    future = _PREFETCHED.pop((config.envs, torch, release), None)
    if future is not None:
        try:
            return future.result()
        except HarnessError:
            pass  # built again below, with its log
    return history_envs.ensure(config.envs, torch, release, config.envs_kind,
                               log=lambda m: log(f"  [{torch}/{release}] {m}"), wheels=config.wheels)


def run_pair(config: SweepConfig, torch: str, release: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Build (or reuse) the pair's environment and run the slice in it; the pair's sweep.json entry."""
    out = pair_dir(config.out, torch, release)
    results = os.path.join(out, "results.json")
    entry: dict[str, Any] = {"torch": torch, "transformers": release, "envs_kind": config.envs_kind}
    done = _results_state(results)
    if done == "complete":
        previous = read_sweep(config.out)["pairs"].get(f"{torch}/{release}")
        return {**(previous or entry), "state": "complete", "cached": True}
    try:
        env = _environment(config, torch, release, log)
    except HarnessError as exc:
        return {**entry, "state": "env_failed", "error": exc.render()}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "pip-freeze.txt"), "w", encoding="utf-8") as fh:
        fh.write(freeze_text(env))  # committed with the sweep: no machine paths
    entry["pip_check"] = [portable_text(line) for line in env.pip_check]
    entry["env_build_s"] = round(env.build_s, 1)
    entry["registered"] = registered_in(env.python)
    args = ["--out", out, "-n", config.workers, *config.run_args]
    cells = [c for c in config.cells if _backend_of(c) in ("eager", *(entry["registered"] or ()))]
    if config.cells and not cells:
        return {**entry, "state": "no_cells", "error": f"no selected cell exists in transformers {release}"}
    args += [part for c in cells for part in ("--cell", c)]
    if done == "partial":
        args.append("--resume")
    env_vars = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.abspath(config.inductor_cache),
                "PYTHONPATH": os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p),
                **config.env_vars}
    env_vars.pop("HARNESS_TRANSFORMERS_SRC", None)  # the release installed in the environment is under test
    if config.pycache:  # bytecode into the cache folder (never next to the sources), read by every later process
        env_vars.pop("PYTHONDONTWRITEBYTECODE", None)
        env_vars["PYTHONPYCACHEPREFIX"] = os.path.abspath(config.pycache)
    before = cache_entries(config.inductor_cache)
    start = time.perf_counter()
    cmd = [env.python, "-m", "harness", "run", *args]
    proc = subprocess.run(cmd, cwd=CHECKOUT, env=env_vars, capture_output=True, text=True, check=False)
    entry["run_s"] = round(time.perf_counter() - start, 1)
    after = cache_entries(config.inductor_cache)
    entry["compiled"] = {kind: len(after[kind] - before[kind]) for kind in CACHE_KINDS}  # graphs not reused
    entry["exit"] = proc.returncode
    with open(os.path.join(out, "run.log"), "w", encoding="utf-8") as fh:
        fh.write(portable_text(proc.stdout + proc.stderr))  # committed with the sweep: no machine paths
    if proc.returncode == EXIT_INTERRUPTED:
        return {**entry, "state": "interrupted"}
    if _results_state(results) != "complete":
        error = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        return {**entry, "state": "run_failed", "error": error[0]}
    with open(results, encoding="utf-8") as fh:
        entry["cells"] = len(json.load(fh).get("cells", []))
    return {**entry, "state": "complete"}


def freeze_text(env: history_envs.Env) -> str:
    """pip-freeze.txt: `pip freeze`, headed by what `pip check` found broken, as comments (still a requirements
    file); portable (an image's packages installed from local files name their paths)."""
    head = "".join(f"# pip check: {line}\n" for line in env.pip_check)
    return portable_text(head + env.freeze)


def cache_entries(inductor_cache: str) -> dict[str, set[str]]:
    """The FX graph and AOTAutograd cache entries in an inductor cache folder (paths relative to their folder).

    Inductor writes an entry for every graph it compiles (a cache miss) and nothing on a hit, so the entries a run
    added are the graphs it compiled: 0 FX graphs means every graph of the run was reused.
    """
    found = {}
    for kind in CACHE_KINDS:
        root = os.path.join(inductor_cache, kind)
        found[kind] = {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}
    return found


def registered_in(python: str) -> list[str] | None:
    """`eager` + the ExpertsInterface keys of the environment's transformers (read from its moe.py, no import)."""
    from harness.environment.registered import MOE_FILE, keys_in

    probe = "import importlib.util as u; print(list(u.find_spec('transformers').submodule_search_locations)[0])"
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    keys = keys_in(os.path.join(proc.stdout.strip(), MOE_FILE))
    return list(keys) if keys else None


def _backend_of(cell_id: str) -> str:
    parts = cell_id.split("-")
    return parts[1] if len(parts) > 1 else ""


def _results_state(path: str) -> str | None:
    """'complete', 'partial' (an interrupted run to resume) or None (nothing usable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return "complete" if doc.get("complete") else "partial"

