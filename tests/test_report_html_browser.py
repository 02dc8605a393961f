"""The HTML page's filters in a real headless browser: a filter in the address is applied on load.

Needs chromium. Skipped without it on a workstation; on CI (CI=true) a missing chromium fails loudly, since
.ci/run installs it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.report_html_support import page, parse

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str:
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed, so the HTML page's script is untested; CI must install it "
                    "(.ci/run: apt-get install -y chromium)")
    pytest.skip("chromium is not installed")


def _after_script(tmp_path, fragment: str):
    """The page's DOM once its script ran, opened at `#fragment`."""
    browser = _chromium()
    html = tmp_path / "report.html"
    html.write_text(page(tmp_path))
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                           f"{html.as_uri()}#{fragment}"], capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0 and "<table" in proc.stdout, proc.stderr[-2000:]
    return parse(proc.stdout)


def _visible(grid):
    rows = grid.find_all(lambda n: n.tag == "tbody")[0].find_all(lambda n: n.tag == "tr")
    return [tr for tr in rows if "hidden" not in tr.attrs], rows


def _on(tr):
    return [td for td in tr.find_all(lambda n: n.tag == "td" and "c" in n.classes)
            if "off" not in td.classes and "hidden" not in td.attrs]


def test_a_status_in_the_address_shows_only_rows_with_such_cells(tmp_path):
    root = _after_script(tmp_path, "status=compile_error")
    grid = root.by_id("grid")
    visible, rows = _visible(grid)
    assert 0 < len(visible) < len(rows)
    for tr in rows:
        matching = [td for td in tr.find_all(lambda n: n.tag == "td" and "c" in n.classes)
                    if td.attrs["data-status"] == "compile_error"]
        assert ("hidden" not in tr.attrs) == bool(matching)  # a row is shown exactly when it has such a cell
    on = [td for tr in visible for td in _on(tr)]
    assert on and {td.attrs["data-status"] for td in on} == {"compile_error"}
    assert root.by_id("shown").text() == str(len(on)) == "4"
    leaves = grid.find_all(lambda n: n.tag == "th" and "leaf" in n.classes)
    shown_cols = {th.attrs["data-col"] for th in leaves if "hidden" not in th.attrs}
    assert shown_cols == {td.attrs["data-col"] for td in on}  # no empty column after filtering


def test_filters_combine_and_group_headers_shrink_to_their_visible_columns(tmp_path):
    root = _after_script(tmp_path, "category=regression&dtype=float32")
    grid = root.by_id("grid")
    visible, _ = _visible(grid)
    on = [td for tr in visible for td in _on(tr)]
    assert len(on) == 2 and {td.attrs["data-category"] for td in on} == {"regression"}
    assert {tr.attrs["data-backend"] for tr in visible} == {"gamma"}
    groups = [th for th in grid.find_all(lambda n: n.tag == "th" and "grp" in n.classes) if "hidden" not in th.attrs]
    assert [(th.text(), th.attrs.get("colspan")) for th in groups] == [("None", "1")]  # was 2: one dtype left
    assert root.by_id("shown").text() == "2"


def test_an_anchor_in_the_address_is_no_filter(tmp_path):
    root = _after_script(tmp_path, "gate")
    visible, rows = _visible(root.by_id("grid"))
    assert len(visible) == len(rows) and root.by_id("shown").text() == "33"
