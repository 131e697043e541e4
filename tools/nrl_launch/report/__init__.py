"""``nrl-launch report``: a suite's launch as one page, compared with the night before.

* :mod:`~nrl_launch.report.model`: the report as frozen dataclasses and its JSON form;
* :mod:`~nrl_launch.report.collect`: the rows, from each experiment's folder and Slurm's job times;
* :mod:`~nrl_launch.report.checks`: the Metric Checks (thresholds) read from the verdict's evidence;
* :mod:`~nrl_launch.report.compare`: ``--compare`` (verdict changes, metric deltas);
* :mod:`~nrl_launch.report.history`: the SQLite results history (``--since``), and
  :mod:`~nrl_launch.report.record`, which WATCH and ``nrl-launch watch`` call when their verdicts are final;
* :mod:`~nrl_launch.report.render`, :mod:`~nrl_launch.report.charts`, :mod:`~nrl_launch.report.timeline`:
  the HTML page (Jinja2 template ``templates/report.html.j2``, curves by leather, the timeline);
* :mod:`~nrl_launch.report.command`: ``run_report``, the command's one library function.

Only the page imports Jinja2 and leather; the history is the standard library's sqlite3.
"""
