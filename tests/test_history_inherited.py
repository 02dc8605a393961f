"""`history --envs-kind inherited --wheels DIR`: the environment of a machine that cannot download (the GPU image).

Builds one real environment, offline: a venv that sees this python's packages (torch among them) and gets
transformers from a wheel built here, a fake release that shadows the installed transformers and requires a
package nobody has (so `pip check` has something to say).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import zipfile

import pytest

from harness.history import envs as history_envs, sweep as history_sweep
from harness.cli.main import main
from harness.errors import HarnessError

RELEASE = "5.99.0"
MISSING = "harness-test-missing-dependency"
MOE = 'class ExpertsInterface:\n    _global_mapping = {"batched_mm": None, "grouped_mm": None}\n'


def _fake_wheel(folder: str, version: str) -> str:
    """A minimal pure-Python transformers wheel (its RECORD with hashes, as pip expects)."""
    info = f"transformers-{version}.dist-info"
    files = {
        "transformers/__init__.py": f'__version__ = "{version}"\n',
        "transformers/integrations/__init__.py": "",
        "transformers/integrations/moe.py": MOE,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n"
                            f"Requires-Dist: {MISSING}>=1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: harness-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    path = os.path.join(folder, f"transformers-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    _fake_wheel(str(wheels), RELEASE)
    root = str(tmp_path_factory.mktemp("envs"))
    torch = history_envs.interpreter_torch()
    env = history_envs.ensure(root, torch, RELEASE, "inherited", wheels=str(wheels))
    return root, str(wheels), torch, env


def test_inherited_environment_is_built_offline_from_the_wheel_and_sees_this_pythons_torch(built):
    root, wheels, torch, env = built
    assert env.folder == os.path.join(root, f"torch-{torch}", f"inherited-transformers-{RELEASE}")
    probe = ("import importlib.metadata as m, importlib.util as u, json, transformers; "
             "print(json.dumps([transformers.__version__, transformers.__file__, u.find_spec('torch').origin, "
             "m.version('torch')]))")  # torch found, not imported (seconds)
    version, tf_file, torch_file, torch_version = json.loads(subprocess.run(
        [env.python, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert version == RELEASE and tf_file.startswith(env.folder + os.sep)  # the wheel's, not this python's
    assert torch_file == importlib.util.find_spec("torch").origin and torch_version.split("+")[0] == torch  # this python's, not installed
    assert "transformers==" + RELEASE in env.freeze.splitlines() and f"torch=={torch_version}" in env.freeze
    assert any(MISSING in line for line in env.pip_check)  # kept, not fatal
    assert history_sweep.registered_in(env.python) == ["eager", "batched_mm", "grouped_mm"]
    text = history_sweep.freeze_text(env)
    assert text.startswith("# pip check: ") and MISSING in text.splitlines()[0]
    again = history_envs.ensure(root, torch, RELEASE, "inherited", wheels=wheels)
    assert again.build_s == 0.0 and again.pip_check == env.pip_check  # cached, with what pip check said


def test_inherited_environment_refuses_another_torch_or_a_missing_wheel(built):
    root, wheels, torch, _ = built
    with pytest.raises(HarnessError, match="runs this python's torch"):
        history_envs.ensure(root, "0.0.1", RELEASE, "inherited", wheels=wheels)
    with pytest.raises(HarnessError, match="no transformers 5.98.0 wheel"):
        history_envs.ensure(root, torch, "5.98.0", "inherited", wheels=wheels)


def test_history_options_for_inherited_environments(built, tmp_path, capsys):
    """What `history --dry-run` plans (releases, torch, wheels) and the one-line errors of bad options."""
    _, wheels, torch, _ = built
    _fake_wheel(wheels, "5.97.0")

    def plan(*argv):
        capsys.readouterr()
        code = main(["history", *argv, "--device", "cpu", "--dry-run"])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if code == 0 else err)

    code, got = plan("--envs-kind", "inherited", "--wheels", wheels)
    assert code == 0 and got["releases"] == ["5.97.0", RELEASE] and got["torch"] == [torch]  # every wheel there
    assert got["wheels"] == os.path.abspath(wheels) and got["envs_kind"] == "inherited"
    code, got = plan("5.97.0", "--envs-kind", "inherited", "--wheels", wheels, "--torch", torch)
    assert code == 0 and got["releases"] == ["5.97.0"]
    for argv, match in [(["--envs-kind", "inherited"], "give --wheels"),
                        (["5.1.0", "--envs-kind", "inherited", "--wheels", wheels], "no wheel in .* for transformers "
                                                                                     "5.1.0"),
                        (["--envs-kind", "inherited", "--wheels", wheels, "--torch", "0.0.1"],
                         "--torch 0.0.1 differs"),
                        (["--envs-kind", "inherited", "--wheels", str(tmp_path)], "no transformers 5.x wheel"),
                        (["5.1.0", "--wheels", wheels], "only --envs-kind inherited")]:
        code, err = plan(*argv)
        assert code == 2 and re.search(match, err) and err.startswith("error: ") and "Traceback" not in err, err


def test_wheels_travel_packed_and_come_back_member_for_member(tmp_path):
    from harness.history import wheels as history_wheels

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    wheels = [_fake_wheel(str(here), version) for version in ("5.97.0", "5.98.0")]
    packed = str(tmp_path / "transformers.tar.xz")
    assert history_wheels.main(["pack", packed, *wheels]) == 0
    rebuilt = sorted(history_wheels.unpack(packed, str(there)))
    assert [os.path.basename(p) for p in rebuilt] == [os.path.basename(p) for p in wheels]
    for original, copy in zip(wheels, rebuilt):
        with zipfile.ZipFile(original) as a, zipfile.ZipFile(copy) as b:
            assert a.namelist() == b.namelist() and all(a.read(n) == b.read(n) for n in a.namelist())
    assert history_envs.wheel_versions(str(there)) == ["5.97.0", "5.98.0"]
