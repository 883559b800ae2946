"""Sphinx directives that generate reference pages from the code: ``symprobe-cli``, ``symprobe-config``
(argument ``md``, ``train`` or ``study``) and ``symprobe-results`` (the measured-results tables)."""

from __future__ import annotations

import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import reference
import results_tables


def _rst_text(text: str) -> str:
    """Plain text safe inside reStructuredText (markup characters escaped)."""
    return re.sub(r"([\\*`|_<>])", r"\\\1", " ".join(text.split()))


class _Generated(SphinxDirective):
    """A directive whose content is reStructuredText made by :meth:`lines`."""

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.section() if self.name != "symprobe-config" else nodes.container()
        nested_parse_with_titles(self.state, StringList(self.lines(), source=f"<{self.name}>"), container)
        return container.children


class CliDirective(_Generated):
    """Every ``symprobe`` subcommand, from :func:`symprobe.cli.build_parser`."""

    def lines(self) -> list[str]:
        return reference.cli_rst()


class ConfigDirective(_Generated):
    """The keys of one config (``md``, ``train`` or ``study``), from the code that checks them."""

    required_arguments = 1

    def lines(self) -> list[str]:
        makers = {"md": reference.md_config_rst, "train": reference.train_config_rst, "study": reference.study_plan_rst}
        return makers[self.arguments[0]]()


class ResultsDirective(_Generated):
    """Every results table, from ``results/*.json``, each row linking its script and JSON."""

    def lines(self) -> list[str]:
        lines = []
        for table in results_tables.TABLES:
            lines += [table.title, "-" * len(table.title), ""]
            rows = []
            for row in table.build():
                script = row.script.split(" ")[0]
                links = [f":download:`{s} <../results/{s}>`" for s in row.sources]
                script_cell = f":download:`{script} <../{script}>`" if script.startswith("benchmarks/") else f"``{row.script}``"
                rows.append((_rst_text(row.question), _rst_text(row.ours), _rst_text(row.paper), ", ".join([script_cell, *links])))
            lines += [".. list-table::", "   :header-rows: 1", "   :widths: 25 45 15 15", ""]
            for cells in [("question", "ours", "paper", "from"), *rows]:
                lines.append(f"   * - {cells[0] or ' '}")
                lines += [f"     - {cell or ' '}" for cell in cells[1:]]
            lines.append("")
        return lines


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_directive("symprobe-cli", CliDirective)
    app.add_directive("symprobe-config", ConfigDirective)
    app.add_directive("symprobe-results", ResultsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
