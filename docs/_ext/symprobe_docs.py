"""Sphinx directives that generate reference pages from the code: ``symprobe-cli``, ``symprobe-config``
(argument ``md``, ``train``, ``slurm`` or ``study``) and ``symprobe-results`` (the measured-results tables); and the
configs' JSON schemas in reference/schemas/, rewritten when the models change."""

from __future__ import annotations

from pathlib import Path

import reference
import results_tables
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


class _Generated(SphinxDirective):
    """A directive whose content is reStructuredText made by :meth:`lines`."""

    def lines(self) -> list[str]:
        raise NotImplementedError

    def sources(self) -> list[Path]:
        """The files the generated text is read from: the page is rebuilt when one of them changes."""
        return [Path(reference.__file__), Path(results_tables.__file__)]

    def run(self) -> list[nodes.Node]:
        for path in self.sources():
            self.env.note_dependency(str(path))
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(self.lines(), source=f"<{self.name}>"), container)
        return container.children


class CliDirective(_Generated):
    """Every ``symprobe`` subcommand, from :func:`symprobe.cli.build_parser`."""

    def lines(self) -> list[str]:
        return reference.cli_rst()

    def sources(self) -> list[Path]:
        import symprobe

        return super().sources() + sorted(Path(symprobe.__file__).parent.rglob("*.py"))


SCHEMA_SOURCES = ("checks.py", "schemas.py", "md/config.py", "training/config.py", "cluster/spec.py", "models/pet.py",
                  "study/plan.py")


class ConfigDirective(_Generated):
    """The keys of one config (``md``, ``train``, ``slurm`` or ``study``), from the models that validate them."""

    required_arguments = 1

    def sources(self) -> list[Path]:
        import symprobe

        package = Path(symprobe.__file__).parent
        return super().sources() + [package / name for name in SCHEMA_SOURCES]

    def lines(self) -> list[str]:
        return reference.CONFIG_PAGES[self.arguments[0]]()


def write_schemas(app: Sphinx) -> None:
    """Write each config's JSON schema to reference/schemas/NAME.schema.json where it differs (the files are
    committed, so that editors can point at them; tests/test_docs.py checks they are current)."""
    from symprobe.files import atomic_write
    from symprobe.schemas import CONFIGS, schema_text

    directory = Path(app.srcdir) / "reference" / "schemas"
    directory.mkdir(exist_ok=True)
    for name in CONFIGS:
        path = directory / f"{name}.schema.json"
        text = schema_text(name)
        if not path.is_file() or path.read_text() != text:
            atomic_write(path, text)


def _results_table(rows: list[results_tables.Row]) -> list[str]:
    """A list-table of ``rows``, each linking its script and JSON (downloads, so the links work offline)."""
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 25 45 15 15", ""]
    for row in [None, *rows]:
        if row is None:
            cells = ("question", "ours", "paper", "from")
        else:
            script = row.script.split(" ")[0]
            links = [f":download:`{s} </../results/{s}>`" for s in row.sources]
            script_cell = f":download:`{script} </../{script}>`" if script.startswith("benchmarks/") else f"``{row.script}``"
            cells = (reference.rst_text(row.question), reference.rst_text(row.ours), reference.rst_text(row.paper), ", ".join([script_cell, *links]))
        lines.append(f"   * - {cells[0] or ' '}")
        lines += [f"     - {cell or ' '}" for cell in cells[1:]]
    return lines + [""]


class ResultsDirective(_Generated):
    """Every results table from ``results/*.json`` (one section each), or with the argument ``headline`` the
    README's headline rows."""

    optional_arguments = 1

    def sources(self) -> list[Path]:
        return super().sources() + sorted(results_tables.RESULTS.rglob("*.json"))

    def lines(self) -> list[str]:
        if self.arguments == ["headline"]:
            return _results_table(results_tables.headline_rows())
        lines = []
        for table in results_tables.TABLES:
            lines += [table.title, "-" * len(table.title), ""] + _results_table(table.build())
        return lines


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("symprobe-cli", CliDirective)
    app.add_directive("symprobe-config", ConfigDirective)
    app.add_directive("symprobe-results", ResultsDirective)
    app.connect("builder-inited", write_schemas)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
