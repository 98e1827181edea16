"""The report's template and its view agree by name: every name report.md.j2 uses is a field of ``PageView`` and
every field is used, so a misspelt or forgotten name fails here rather than when a run's report is written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jinja2
from jinja2 import meta

from harness.render.report import TEMPLATES, PageView


def template_names(environment: jinja2.Environment, name: str) -> set[str]:
    source = Path(environment.loader.get_source(environment, name)[1])
    return meta.find_undeclared_variables(environment.parse(source.read_text(encoding="utf-8")))


def test_every_name_the_report_template_uses_is_a_field_of_its_view_and_every_field_is_used():
    used = template_names(TEMPLATES, "report.md.j2")
    fields = {field.name for field in dataclasses.fields(PageView)}
    assert used - fields == set(), "the template uses names the view does not have"
    assert fields - used == set(), "the view has fields the template never shows"
