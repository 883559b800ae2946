"""The documentation: docstrings of the public API, the README, the generated reference and results tables,
and a built site without broken internal links or missing images.

The site is built once per session as ``make docs`` builds it, the tutorials executed (about 1.5 minutes on
2 cores, of which the tutorials take under one).
"""

from __future__ import annotations

import argparse
import functools
import html
import html.parser
import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlparse

import pytest

import symprobe

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _docs_module(name: str) -> ModuleType:
    """A module of docs/_ext (the generators the docs build uses), imported from its file."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


reference = _docs_module("reference")
results_tables = _docs_module("results_tables")


def _public_modules() -> list[str]:
    return ["symprobe"] + [m.name for m in pkgutil.walk_packages(symprobe.__path__, "symprobe.")
                           if not any(part.startswith("_") for part in m.name.split("."))]


def _public_objects() -> list[tuple[str, object]]:
    """Public functions and classes: each module's own definitions without a leading underscore, and the
    names in each package's ``__all__``."""
    found = {}
    for name in _public_modules():
        module = importlib.import_module(name)
        names = set(getattr(module, "__all__", [])) | {n for n in vars(module) if not n.startswith("_")}
        for attribute in names:
            obj = getattr(module, attribute)
            public = attribute in getattr(module, "__all__", []) or getattr(obj, "__module__", None) == name
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("symprobe") and public:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.items())


def _own_docstring(obj: object) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else inspect.getdoc(obj)
    if inspect.isclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return ""  # the signature a dataclass writes when it has no docstring
    return (doc or "").strip()


def _public_methods(objects: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Public methods and properties defined by the public classes (a docstring may come from a base class)."""
    methods = []
    for name, cls in objects:
        if not inspect.isclass(cls):
            continue
        for attribute, value in vars(cls).items():
            function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if not attribute.startswith("_") and inspect.isfunction(function):
                methods.append((f"{name}.{attribute}", value if isinstance(value, property) else getattr(cls, attribute)))
    return methods


def test_every_public_function_and_class_has_a_one_line_summary():
    objects = _public_objects()
    objects += _public_methods(objects)
    assert len(objects) > 300  # the walk found the package
    missing = [name for name, obj in objects if not _own_docstring(obj)]
    assert not missing, f"public names without a docstring: {missing}"
    no_summary = [name for name, obj in objects if not _own_docstring(obj).split("\n")[0].strip()]
    assert not no_summary


def test_readme_is_short_and_its_headline_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert results_tables.readme_with_headline(readme) == readme, "run: python docs/_ext/results_tables.py --readme"
    assert "make demo" in readme and "make test" in readme


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the example must run as written
    assert namespace["atoms"].get_potential_energy() < 0


def test_results_tables_are_read_from_their_json(monkeypatch):
    """Every row comes from existing JSON files and scripts; changing a JSON value changes the table."""
    for table in results_tables.TABLES:
        rows = table.build()
        assert rows, table.title
        for row in rows:
            for source in row.sources:
                assert (results_tables.RESULTS / source).is_file(), source
            script = row.script.split(" ")[0]
            assert not script.startswith("benchmarks/") or (ROOT / script).is_file(), script
    original = results_tables.load("train_water.json")
    pet = original["models"]["water-pet"]
    patched = {**original, "models": {**original["models"], "water-pet": {**pet, "test": {**pet["test"], "force_mae": 12345.0}}}}
    real = results_tables.load
    monkeypatch.setattr(results_tables, "load", lambda name: patched if name == "train_water.json" else real(name))
    assert results_tables.accuracy_rows()[0].ours.startswith("1.23e+04 / ")


def test_every_cli_subcommand_and_config_key_is_in_the_reference():
    cli = "\n".join(reference.cli_rst())
    for name, parser in reference.subcommands().items():
        assert f"``symprobe {name}``" in cli
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"``{option}``" in cli, (name, option)
    keys = reference.config_keys()
    assert set(keys) == set(reference.CONFIG_PAGES) == {"md", "train", "pretrain-data", "slurm", "study"}
    assert {"symmetrizer.n_inner", "ensemble.tau_fs", "output.log_stride", "transport"} <= set(keys["md"])
    assert {"data.path", "training.lr", "model.width", "model.direct_forces"} <= set(keys["train"])
    for config, names in keys.items():
        text = "\n".join(reference.CONFIG_PAGES[config]())
        for key in names:
            assert f"``{key}``" in text, (config, key)


@functools.cache
def _read(path: Path) -> str:
    return path.read_text()


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if tag == "img" and values.get("src"):
            self.images.append(values["src"])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("sphinx_gallery", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("furo", reason="the docs extra is not installed")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
                           capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    return out / "html"


def test_built_site_has_no_broken_internal_link_or_missing_image(site: Path):
    pages = list(site.rglob("*.html"))
    assert len(pages) > 50
    broken = []
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text())
        for target in parser.links + parser.images:
            url = urlparse(target)
            if url.scheme or target == "#":
                continue
            path = (page.parent / unquote(url.path)).resolve() if url.path else page
            if not path.exists():
                broken.append(f"{page.relative_to(site)} → {target}")
            elif url.fragment and path.suffix == ".html" and f'id="{unquote(url.fragment)}"' not in _read(path):
                broken.append(f"{page.relative_to(site)} → {target} (no such anchor)")
    assert not broken, broken[:20]


def _text(page: Path) -> str:
    """The visible text of an HTML page, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


def test_built_site_has_the_reference_and_results(site: Path):
    cli = _text(site / "reference" / "cli.html")
    for name in reference.subcommands():
        assert f"symprobe {name}" in cli
    config = _text(site / "reference" / "config.html")
    for keys in reference.config_keys().values():
        for key in keys:
            assert key.split(".")[-1] in config, key
    assert "mailto:" not in (site / "reference" / "cli.html").read_text()  # FILE@SLICE is not an address
    page = (site / "results.html").read_text()
    assert page.count("<table") >= len(results_tables.TABLES) and ":download:" not in page  # parsed as tables
    results = _text(site / "results.html")
    for table in results_tables.TABLES:
        assert table.title in results
        for row in table.build():
            assert " ".join(row.ours.split()) in results, row.question
    assert (site / "_downloads").is_dir()  # the rows' script and JSON links


def test_tutorials_ran_with_their_figures_within_five_minutes(site: Path):
    for gallery in ("tutorials", "concepts"):
        scripts = sorted((DOCS / f"{gallery}_src").glob("plot_*.py"))
        assert len(scripts) >= 4
        for script in scripts:
            page = (site / gallery / f"{script.stem}.html").read_text()
            assert "sphx-glr-single-img" in page or "sphx-glr-multi-img" in page, f"{script.name} made no figure"
    times = (DOCS / "sg_execution_times.rst").read_text()
    minutes, seconds = re.search(r"\*\*(\d+):(\d+\.\d+)\*\* total execution time", times).groups()
    assert 60 * int(minutes) + float(seconds) < 300
