"""Render the leaderboard: run directories -> index.html, leaderboard.md, plots/*.svg.

The HTML page is self-contained (inline style, script and SVG; no external
request) and carries a Content-Security-Policy that allows only that exact
style and script (by hash), so even a string that escaped escaping could not
run. Plugin-provided text is untrusted: HTML autoescaping is on for the page,
and the markdown escapes every expression through `md_escape`.
"""
from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from markupsafe import Markup

from .. import __version__
from ..defaults import CATEGORIES
from ..errors import UsageError
from ..run.faults import checkpoint
from ..util import atomic_write_text
from . import fmt
from .load import load_runs
from .model import build_suites, category_order
from .plots import PLOT_NAME, suite_plots
from .provenance import build_provenance
from .svg import CATEGORY_COLORS, OTHER_COLOR

TEMPLATES = Path(__file__).parent / "templates"
_BREAKING_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~])")


def md_escape(value) -> str:
    """Text safe inside a GitHub markdown table cell: no markup, no HTML, no pipes, one line."""
    if value is None:
        return ""
    if isinstance(value, Markup):   # template-made markup (e.g. <br>) passes untouched
        return str(value)
    text = _BREAKING_SPACE.sub(" ", str(value)).strip()   # keeps no-break spaces (U+00A0)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value) -> Markup:
    """An inline code span (shown literally, no HTML), safe inside a table cell."""
    text = _BREAKING_SPACE.sub(" ", str(value)).strip().replace("|", "\\|")
    runs = re.findall(r"`+", text)
    fence = "`" * (max(map(len, runs), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}")


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def _environment(markdown: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=not markdown,
        finalize=md_escape if markdown else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(md_code=md_code, cost=lambda value, key: fmt.cost(key, value), cost_label=fmt.cost_label, number=fmt.number,
                       estimate=fmt.estimate, percent=fmt.percent, rank=fmt.rank)
    env.globals.update(category_color=lambda c: CATEGORY_COLORS.get(c, OTHER_COLOR),
                       category_order=category_order)
    return env


def render_report(run_dirs: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write the report for one or more run directories; return {relative name: path}."""
    loaded = load_runs([Path(d) for d in run_dirs])
    if not loaded.records:
        raise UsageError("no cell records found in " + ", ".join(str(d) for d in run_dirs))
    suites = build_suites(loaded.records)
    plots = [suite_plots(view) for view in suites]
    style = (TEMPLATES / "style.css").read_text(encoding="utf-8")
    script = (TEMPLATES / "sort.js").read_text(encoding="utf-8")
    context = dict(
        suites=suites, plots=plots, notes=loaded.notes, prov=build_provenance(loaded),
        version=__version__, categories=[c for c in CATEGORIES],
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        run_dirs=[str(d) for d in run_dirs],
    )
    page = _environment(markdown=False).get_template("index.html.j2").render(
        **context, style=Markup(style), script=Markup(script),
        csp=f"default-src 'none'; style-src '{_csp_hash(style)}'; "
            f"script-src '{_csp_hash(script)}'; img-src data:; base-uri 'none'; form-action 'none'",
        svg=Markup)
    markdown = _environment(markdown=True).get_template("leaderboard.md.j2").render(
        **context, br=Markup("<br>"))
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    try:
        for per_suite in plots:
            for column_plots in per_suite.values():
                for plot in column_plots:
                    path = out_dir / "plots" / plot.name
                    checkpoint("report")
                    atomic_write_text(path, plot.svg + "\n")
                    written[f"plots/{plot.name}"] = path
        for name, text in (("index.html", page), ("leaderboard.md", markdown)):
            checkpoint("report")
            atomic_write_text(out_dir / name, text)
            written[name] = out_dir / name
        _remove_stale_plots(out_dir / "plots", set(written.values()))
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None
    return written


def _remove_stale_plots(plots_dir: Path, current: set[Path]) -> None:
    """Delete plots an earlier report wrote here that this one no longer shows (another suite hash, a
    dropped track), so a published report folder holds only what its pages reference. Other files stay."""
    if not plots_dir.is_dir():
        return
    for path in plots_dir.iterdir():
        if path.is_file() and PLOT_NAME.match(path.name) and path not in current:
            path.unlink()
