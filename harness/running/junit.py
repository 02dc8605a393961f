"""`<out>/junit.xml`: this run's testcases, plus one per results.json cell this run did not run.

pytest writes the testcases of the items it ran; `finalize` adds the cells that results.json holds without this
run having run them (kept by `--resume` or `--last-failed`, or not runnable here, such as cuda cells without a
GPU), so that junit.xml and results.json always list the same cells. The previous junit.xml is set aside
before pytest starts (`set_aside`) and put back when the run ran no cell: a run that ran nothing leaves it alone.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from typing import Any

from harness.portable import portable_text
from harness.results.results_json import atomic_write_text


def set_aside(junit: str, aside: str) -> None:
    """Move an existing junit.xml out of pytest's way (pytest writes one even when it runs nothing)."""
    if os.path.exists(aside):
        os.unlink(aside)
    if os.path.exists(junit):
        os.replace(junit, aside)


def finalize(junit: str, aside: str, results_path: str, *, strict: bool) -> bool:
    """Complete pytest's `junit` from results.json; if no cell ran, put the set-aside file back. True if a cell ran."""
    cases: list[ET.Element] = []
    root = suite = None
    if os.path.exists(junit):
        try:
            root = ET.parse(junit).getroot()
            suite = root.find("testsuite") if root.tag == "testsuites" else root
            cases = suite.findall("testcase") if suite is not None else []
        except ET.ParseError:
            cases = []
    if not cases or not os.path.exists(results_path):
        if os.path.exists(aside):
            os.replace(aside, junit)
        elif os.path.exists(junit):
            os.unlink(junit)
        return False
    if os.path.exists(aside):
        os.unlink(aside)
    with open(results_path, encoding="utf-8") as fh:
        cells = json.load(fh)["cells"]
    present = {case.get("name") for case in cases}
    classname = cases[0].get("classname") or ""
    for record in cells:
        if record["id"] not in present:
            suite.append(_testcase(record, classname, strict))
    everything = suite.findall("testcase")
    suite.set("tests", str(len(everything)))
    for attribute, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        suite.set(attribute, str(sum(1 for case in everything if case.find(tag) is not None)))
    # pytest writes skip locations and tracebacks with this machine's paths: the file is shared like results.json.
    text = portable_text(ET.tostring(root, encoding="unicode"))
    atomic_write_text(junit, '<?xml version="1.0" encoding="utf-8"?>' + text)
    return True


def _testcase(record: dict[str, Any], classname: str, strict: bool) -> ET.Element:
    """The testcase pytest would have written for this record, marked as not run by this invocation."""
    from harness.running.plugin import failure_text

    case = ET.Element("testcase", classname=classname, name=record["id"], time=f"{record.get('duration_s') or 0:.3f}")
    properties = ET.SubElement(case, "properties")
    not_run = record["status"] == "skipped"
    ET.SubElement(properties, "property", name="recorded",
                  value="not run: not runnable here" if not_run else "kept from an earlier run (results.json)")
    ET.SubElement(properties, "property", name="cell", value=json.dumps(record, default=str))
    verdict = record["verdict"]
    if verdict in ("regression", "flaky"):
        text = failure_text(record)
        ET.SubElement(case, "failure", message=text).text = text
    elif verdict == "unexpected_pass" and strict:
        text = f"[XPASS(strict)] {record.get('expected', {}).get('reason', '')}"
        ET.SubElement(case, "failure", message=text).text = text
    elif verdict == "not_applicable":
        message = (record.get("error") or {}).get("message", "not run")
        ET.SubElement(case, "skipped", type="pytest.skip", message=f"not applicable: {message}")
    elif record["status"] != "pass":  # failed as documented: pytest's xfail
        ET.SubElement(case, "skipped", type="pytest.xfail", message=record.get("verdict_reason", ""))
    return case
