"""``ctkd-bench report RUN_DIR... --out DIR``: the leaderboard (index.html + leaderboard.md)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the report (default: RUN_DIR/report for a single run dir).")
def command(run_dirs, out_dir):
    """Build the leaderboard from one or more run directories (merged).

    Rewriting an existing report folder replaces its pages and removes the plots an earlier report left
    there that this one does not show; other files in it stay."""
    from ..report.render import render_report   # jinja2 and pandas only when asked for

    if out_dir is None:
        if len(run_dirs) > 1:
            raise UsageError("several run directories: say where the merged report goes with --out")
        out_dir = run_dirs[0] / "report"
    written = render_report(list(run_dirs), out_dir)
    plots = sum(1 for name in written if name.startswith("plots/"))
    click.echo(f"wrote {written['index.html']}")
    click.echo(f"wrote {written['leaderboard.md']} (+ {plots} plots)")
