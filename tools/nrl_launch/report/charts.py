"""The curves of an experiment's metrics, drawn as inline SVG by leather.

One small chart per series (its steps across every run: the recipe resumes
from its checkpoint, so ``metrics.json`` holds them all), with the Metric
Checks' thresholds of that metric as dashed lines: red for a check that
failed, green for one that passed. A long series is thinned to at most
:data:`MAX_POINTS` points (its first and last kept) so a page of 200
experiments stays light.

leather rather than matplotlib: a report of 200 experiments must be written
in under 2 s, and matplotlib takes about 0.3 s per experiment's figure
(leather about 20 ms); see the README and ``benchmarks/bench_report.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import leather

from nrl_launch.report.model import Check, Point, Series

MAX_POINTS = 60  # a 300-unit wide chart: a point every 4 units
WIDTH, HEIGHT = 300, 170
LINE_COLOR = "#1f5fa8"
PASSED_COLOR, FAILED_COLOR = "#2e8b3e", "#c0392b"

# The library's theme is module state: set once, for every chart of the report.
leather.theme.background_color = "#ffffff"
leather.theme.title_font_size = 12
leather.theme.title_font_char_height = 14
leather.theme.title_font_char_width = 7
leather.theme.tick_font_size = 10
leather.theme.tick_font_char_width = 6
leather.theme.tick_font_char_height = 10
leather.theme.legend_font_size = 10
leather.theme.legend_font_char_width = 6
leather.theme.legend_font_char_height = 12
leather.theme.title_font_family = leather.theme.tick_font_family = leather.theme.legend_font_family = "sans-serif"


def thin(points: Sequence[Point], most: int = MAX_POINTS) -> list[Point]:
    """At most ``most`` of the points, evenly spaced, the first and the last always kept."""
    if len(points) <= most:
        return list(points)
    stride = (len(points) - 1) / (most - 1)
    return [points[round(i * stride)] for i in range(most)]


def _domain(low: float, high: float) -> tuple[float, float]:
    """A domain leather can draw: a single value gets some room around it."""
    if low < high:
        return low, high
    pad = abs(low) * 0.1 or 1.0
    return low - pad, high + pad


def _widened(low: float, high: float) -> tuple[float, float]:
    """The domain widened outwards to two significant digits of its span: leather's ticks widen it
    further anyway, and charts of similar values then share one scale (see :func:`_scale`)."""
    unit = 10.0 ** (math.floor(math.log10(high - low)) - 1)
    return round(math.floor(low / unit) * unit, 12), round(math.ceil(high / unit) * unit, 12)


@lru_cache(maxsize=4096)
def _scale(low: float, high: float) -> leather.Linear:
    """One scale per domain: finding a scale's ticks is most of a chart's time in leather, and a
    scale does not change once made (every experiment of a suite has the same steps)."""
    return leather.Linear(low, high)


def curve_svg(series: Series, checks: Sequence[Check]) -> str:
    """The ``<svg class="curve">`` of one series and the thresholds of its checks."""
    points = thin(series.points)
    bounds = [c for c in checks if c.metric == series.name]
    values = [v for _, v in points] + [c.bound for c in bounds]
    x0, x1 = _domain(float(points[0][0]), float(points[-1][0]))
    chart = leather.Chart(series.name)
    chart.set_x_scale(_scale(x0, x1))
    chart.set_y_scale(_scale(*_widened(*_domain(min(values), max(values)))))
    chart.add_line(points, stroke_color=LINE_COLOR, width=1.5, name=series.name)
    for check in bounds:  # named: leather then shows a legend ("min 0.5 FAIL")
        chart.add_line([(x0, check.bound), (x1, check.bound)], width=1, stroke_dasharray="5 3",
                       stroke_color=PASSED_COLOR if check.passed else FAILED_COLOR,
                       name=f"{'max' if check.op == '<' else 'min'} {check.bound:g} "
                            f"{'PASS' if check.passed else 'FAIL'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # leather warns about points on the very edge of the domain
        svg = str(chart.to_svg(width=WIDTH, height=HEIGHT))
    label = f"{series.name} by step" + "".join(f"; check {c.text()}" for c in bounds)
    return svg.replace("<svg ", f'<svg class="curve" role="img" aria-label="{_attr(label)}" ', 1)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
