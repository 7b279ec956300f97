"""The report's HTML: the Jinja2 template page.html.j2 filled with build.py's context."""

import math
import os

import jinja2
import markdown
from markupsafe import Markup

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def metric(value, signed: bool = False) -> str:
    """A metric for a table cell, 4 decimals; '-' when missing or NaN."""
    if value is None or math.isnan(value):
        return '-'
    return f'{value:{"+" if signed else ""}.4f}'


def count(value) -> str:
    return '-' if value is None else f'{int(value):,}'


_ENVIRONMENT.filters.update(metric=metric, count=count)


def markdown_file(path: str) -> Markup:
    """A markdown file (e.g. a benchmark table) as HTML; its pipe tables become <table>s."""
    with open(path) as f:
        return Markup(markdown.markdown(f.read(), extensions=['tables']))


def render(context: dict) -> str:
    return _ENVIRONMENT.get_template('page.html.j2').render(**context)
