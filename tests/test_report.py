"""The HTML report: every figure and table present, self-contained, no NaN; rendered in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from symprobe.study import report

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    """The report of test_study's tiny study (computed once per session), re-rendered with a note."""
    from test_study import tiny_study

    out, _, results = tiny_study(tmp_path_factory)
    path = report.write_report({**results, "note": "test note: known-answer model"}, out / "report-with-note.html")
    assert (out / "report.html").exists()
    return path


def test_report_has_every_figure_and_table(report_path):
    text = report_path.read_text()
    for name in report.FIGURES:
        assert re.search(rf"<figure id='figure-{name}'><img alt='{name}' src='data:image/png;base64,[A-Za-z0-9+/=]{{500,}}'", text), name
    for name in report.TABLES:
        assert f'id="table-{name}"' in text, name
    visible = re.sub(r"base64,[A-Za-z0-9+/=]+", "", text)
    assert "NaN" not in visible and "nan" not in re.split(r"[\s<>]+", visible.lower())
    assert "Langer" in text and "test note: known-answer model" in text
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched


def test_report_refuses_nan():
    with pytest.raises(ValueError, match="non-finite"):
        report._fmt(float("nan"))


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (Debian package 'chromium' not installed)")
def test_report_renders_in_headless_chromium(report_path, tmp_path):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", report_path.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count("<figure") == len(report.FIGURES)
    assert dom.count("<table") >= len(report.TABLES)
    visible = re.sub(r"base64,[A-Za-z0-9+/=]+", "", dom)
    assert "NaN" not in visible
    assert "Agreement with the paper" in visible
