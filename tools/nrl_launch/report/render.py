"""The report as one self-contained HTML page, rendered by Jinja2 from the report's JSON data.

The template (``templates/report.html.j2``, package data) reads the same
data ``--format json`` prints (:func:`nrl_launch.report.model.report_to_data`);
the curves (:mod:`~nrl_launch.report.charts`) and the timeline
(:mod:`~nrl_launch.report.timeline`) are drawn from the same rows. The page
needs nothing from the network: styles are inline, the figures inline SVG,
there is no script, font or image to fetch. Links to driver logs are
relative to the page, so the page and the snapshot folders can move together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from nrl_launch.report.charts import curve_svg
from nrl_launch.report.model import Report, report_to_data
from nrl_launch.report.timeline import layout

TEMPLATE = "report.html.j2"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("nrl_launch.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(clock=clock, duration=duration, hours=hours, number=number)
    return env


def clock(when: float | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` (local), ``-`` when unknown."""
    return "-" if when is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s``, ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    hours_, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours_}h {minutes:02d}m" if hours_ else f"{minutes}m {secs:02d}s"


def hours(value: float | None) -> str:
    """GPU-hours with two decimals, ``-`` when unknown."""
    return "-" if value is None else f"{value:,.2f}"


def number(value: float | None) -> str:
    """A metric value, short."""
    return "-" if value is None else f"{value:.6g}"


def _links(report: Report, page_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Per experiment: (the job id, with its restart count after a requeue, e.g. ``101`` or ``101-1``;
    the path relative to the page) of each driver log."""
    found: dict[str, list[tuple[str, str]]] = {}
    for exp in report.experiments:
        found[exp.name] = [(Path(log).parent.name.rsplit("-", 1)[0], os.path.relpath(log, page_dir))
                           for log in exp.logs]
    return found


def render_html(report: Report, page: Path) -> str:
    """The page of ``report``, to be written at ``page`` (links are relative to its folder)."""
    data: Mapping[str, Any] = report_to_data(report)
    curves = {exp.name: [Markup(curve_svg(series, exp.checks)) for series in exp.series]
              for exp in report.experiments}
    return _environment().get_template(TEMPLATE).render(
        data=data, curves=curves, timeline=layout(report.experiments, report.generated_at),
        links=_links(report, page.resolve().parent))
