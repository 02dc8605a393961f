"""nox sessions: the compile matrix and the harness's own tests, in pip-based virtualenvs."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "virtualenv"  # pip: uv ignores the local torch wheel
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# torch is a session parameter: HARNESS_TORCH=2.14.1 (or "2.13.0,2.14.1") picks others, each in its own venv.
TORCH_VERSIONS = os.environ.get("HARNESS_TORCH", "2.13.0").split(",")
# The newest transformers release; the GPU runs carry the same release as a wheel (README, GPU).
TRANSFORMERS = os.environ.get("HARNESS_TRANSFORMERS", "transformers==5.24.0")


def _install(session: nox.Session, torch: str) -> None:
    session.install(f"torch=={torch}")
    session.install(TRANSFORMERS, "-e", ".")


@nox.session
@nox.parametrize("torch", TORCH_VERSIONS)
def compile_matrix(session: nox.Session, torch: str) -> None:
    """Run the compile matrix; arguments after -- go to `python -m harness run`."""
    _install(session, torch)
    session.run("python", "-m", "harness", "run", *session.posargs)


@nox.session
@nox.parametrize("torch", TORCH_VERSIONS)
def tests(session: nox.Session, torch: str) -> None:
    """Run the harness's own test suite; arguments after -- go to pytest."""
    _install(session, torch)
    # check-jsonschema validates the GitHub workflow against its published schema; import-linter checks the layout
    session.install("check-jsonschema", "import-linter")
    session.run("python", "-m", "pytest", "-n", "2", *session.posargs)


@nox.session
@nox.parametrize("torch", TORCH_VERSIONS)
def benchmark(session: nox.Session, torch: str) -> None:
    """Benchmark the backends (never part of `tests`); arguments after -- go to `python -m harness bench`."""
    _install(session, torch)
    session.install("-e", ".[bench]")  # matplotlib, for the plots
    session.run("python", "-m", "harness", "bench", *session.posargs)


@nox.session
@nox.parametrize("torch", TORCH_VERSIONS)
def speed(session: nox.Session, torch: str) -> None:
    """Time the harness itself (cold, warm, vs process-per-cell); arguments after -- go to `harness speed`."""
    _install(session, torch)
    session.run("python", "-m", "harness", "speed", *session.posargs)


@nox.session
def history(session: nox.Session) -> None:
    """Sweep transformers releases (one cached pip venv per torch x release); arguments go to `harness history`."""
    # The controller needs no torch: every (torch, release) pair gets its own environment under .nox/history/.
    session.install("pyyaml>=6", "pytest>=8")
    session.run("python", "-m", "harness", "history", "--torch", ",".join(TORCH_VERSIONS), *session.posargs)
