"""Sphinx configuration of the symprobe documentation (``make docs``: executed tutorials, warnings as errors, offline)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(DOCS / "_ext"), str(ROOT / "src")]  # the generators, and this checkout's symprobe
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

project = "symprobe"
author = "the symprobe developers"
copyright = "2026, the symprobe developers"
release = version = re.search(r'__version__ = "(.+)"', (ROOT / "src" / "symprobe" / "__init__.py").read_text())[1]

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "symprobe_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "tutorials_src", "concepts_src", "Thumbs.db", ".DS_Store"]
myst_heading_anchors = 3

autosummary_generate = True
templates_path = ["_templates"]  # module pages titled by their last name under their package
autosummary_imported_members = False
autodoc_default_options = {"members": True, "ignore-module-all": True}  # each object documented in its own module
autodoc_typehints = "description"
add_module_names = False
suppress_warnings = ["ref.python"]  # a name re-exported by its package resolves to two documented paths
nitpicky = False

sphinx_gallery_conf = {
    "examples_dirs": ["tutorials_src", "concepts_src"],
    "gallery_dirs": ["tutorials", "concepts"],
    "filename_pattern": r"/[a-z]",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "show_memory": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "min_reported_time": 1,
}

smartquotes = False  # options such as --fail-above stay as typed
html_theme = "furo"
html_title = f"symprobe {release}"
html_static_path = ["_static"]
html_css_files = ["symprobe.css"]
html_theme_options = {"sidebar_hide_name": False}


def _plain_text_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Docstrings are plain text with formulas such as |F(x) − F̄|: escape '|' outside inline literals."""
    for i, line in enumerate(lines):
        parts = re.split(r"(``.*?``)", line)
        lines[i] = "".join(part if part.startswith("``") else part.replace("|", "\\|") for part in parts)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _plain_text_docstring)
