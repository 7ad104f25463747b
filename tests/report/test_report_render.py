"""The rendered report: self-contained HTML, escaped plugin strings, GitHub-friendly markdown."""
from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from ctkd_bench.cli.report import command as report_command
from ctkd_bench.report.plots import PLOT_NAME
from ctkd_bench.report.render import md_code, md_escape, render_report
from ctkd_bench.results.synthetic import EVIL_NAME, write_synthetic_run


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <script>/<style>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in self.raw else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in:
            self.raw[self._in].append(data)


@pytest.fixture(scope="module")
def page(rendered):
    return rendered["index.html"].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tags(page):
    parser = Tags()
    parser.feed(page)
    return parser


def test_writes_html_markdown_and_one_svg_per_plot(rendered):
    assert {"index.html", "leaderboard.md"} <= set(rendered)
    plots = [name for name in rendered if name.startswith("plots/")]
    assert len(plots) == 8                      # bars + cost scatter for each of four tracks
    for name in plots:
        assert rendered[name].read_text().startswith("<svg")


def test_html_is_self_contained(page, tags):
    for tag, attrs in tags.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        for name in ("src", "srcset", "data", "poster"):
            assert name not in attrs, (tag, attrs)
        if tag == "a" and "href" in attrs:
            assert re.match(r"^(#|https?://)", attrs["href"]), attrs["href"]
    assert "@import" not in page and "url(" not in page
    assert [t for t, _ in tags.tags].count("script") == 1
    assert [t for t, _ in tags.tags].count("style") == 1


def test_content_security_policy_allows_exactly_the_inline_script_and_style(tags):
    [csp] = [a["content"] for t, a in tags.tags if a.get("http-equiv") == "Content-Security-Policy"]
    for kind in ("script", "style"):
        body = "".join(tags.raw[kind])
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_plugin_strings_are_escaped_everywhere_in_html(page, tags):
    assert "<script>alert" not in page
    assert "<img src=x" not in page and "<b>bold" not in page and "<i>Title" not in page
    assert "javascript:" not in page
    assert "evil&lt;script&gt;alert(1)&lt;/script&gt;" in page      # shown, as text
    assert "&lt;img src=x onerror=alert(2)&gt;" in page              # config values too
    assert not [t for t, _ in tags.tags if t in ("b", "i", "u", "img")]


def test_every_empty_table_cell_says_why(tags, page):
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page, flags=re.S)
    assert cells
    for cell in cells:
        text = re.sub(r"<[^>]+>", "", cell).strip()
        assert text, "an empty cell"
    for phrase in ("not run", "n/a", "failed", "CellFailure: non-finite loss at step 37"):
        assert phrase in page


def test_markdown_escapes_plugin_strings_and_keeps_tables_well_formed(rendered):
    md = rendered["leaderboard.md"].read_text(encoding="utf-8")
    assert "<script" not in md and "<img" not in md and "<b>" not in md
    assert "javascript:" not in md
    table = None
    for line in md.splitlines():
        if line.startswith("|"):
            cells = len(re.findall(r"(?<!\\)\|", line))
            table = table or cells
            assert cells == table, line            # every row has the header's column count
        else:
            table = None
    for name in [n for n in rendered if n.startswith("plots/")]:
        assert f"]({name})" in md


def test_markdown_renders_with_a_commonmark_table_parser(rendered):
    markdown_it = pytest.importorskip("markdown_it")
    md = rendered["leaderboard.md"].read_text(encoding="utf-8")
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    allowed = {"h1", "h2", "h3", "h4", "p", "table", "thead", "tbody", "tr", "th", "td", "br",
               "strong", "em", "code", "a", "img", "ul", "li", "details", "summary"}
    found = set(re.findall(r"<([a-z0-9]+)[\s>/]", html))
    assert found <= allowed, found - allowed
    assert EVIL_NAME.replace("<", "&lt;").replace(">", "&gt;") in html
    assert html.count("<table>") >= 5


def test_md_helpers():
    assert md_escape("a|b <i>x</i> *y* [z](u)") == r"a\|b &lt;i&gt;x&lt;/i&gt; \*y\* \[z\]\(u\)"
    assert md_escape("two\nlines") == "two lines"
    assert md_code("a|b") == "`a\\|b`" and md_code("x`y") == "``x`y``"


def test_several_run_dirs_merge_and_duplicates_are_noted(tmp_path):
    first = write_synthetic_run(tmp_path / "a", methods=["sft", "uld"], evil=False)
    second = write_synthetic_run(tmp_path / "b", methods=["sft", "alm"], evil=False)
    other = write_synthetic_run(tmp_path / "c", suite="small", methods=["sft"], evil=False,
                                rng_seed=1)
    out = render_report([first, second, other], tmp_path / "out")
    page = out["index.html"].read_text()
    assert "Suite <code>tiny</code>" in page and "Suite <code>small</code>" in page
    assert ">uld<" in page and ">alm<" in page
    assert "appears in several run directories" in page     # sft and references in both a and b


def test_cli_default_out_dir_and_usage_errors(synthetic_run, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    write_synthetic_run(run, methods=["sft"], evil=False)
    result = runner.invoke(report_command, [str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "index.html").exists() and "leaderboard.md" in result.output
    result = runner.invoke(report_command, [str(run), str(synthetic_run)])
    assert result.exit_code != 0 and "--out" in str(result.exception)
    result = runner.invoke(report_command, [str(tmp_path / "nothing-here"), "--out", str(tmp_path)])
    assert "not a ctkd-bench run directory" in str(result.exception)


def test_cli_through_the_main_group_exits_2_with_one_line(tmp_path, capsys):
    from ctkd_bench.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "not a ctkd-bench run directory" in capsys.readouterr().err


def test_sparse_runs_render_and_explain_what_is_missing(tmp_path):
    from ctkd_bench.results import CellRecord, RunStore
    store = RunStore(tmp_path / "run")
    store.write_run_info({"suite": "s", "suite_hash": "h"})
    base = dict(run_id="r", suite="s", suite_hash="h", pair="t->s", role="method", seed=0,
                primary_metric="accuracy", higher_is_better=True)
    store.write(CellRecord(cell_id="a", track="embed", method="uld", status="ok",
                           metrics={"accuracy": 0.7}, **base))           # no costs, no SFT
    store.write(CellRecord(cell_id="b", track="math", method="uld", status="failed",
                           reason="Traceback ...\nValueError: boom", **base))
    out = render_report([store.run_dir], tmp_path / "out")
    page = out["index.html"].read_text()
    assert "n/a: no SFT row" in page and "n/a: not metered" in page
    assert "failed:<small>ValueError: boom</small>" in page          # a traceback's last line
    assert "No plot: no method has a score on this track." in page
    assert "No diagnostics" in page
    assert [n for n in out if n.startswith("plots/")] == [
        n for n in out if n.startswith("plots/") and "embed" in n]


def test_a_run_without_records_is_a_usage_error(tmp_path):
    from ctkd_bench.errors import UsageError
    from ctkd_bench.results import RunStore
    RunStore(tmp_path / "run").write_run_info({"suite": "s", "suite_hash": "h"})
    with pytest.raises(UsageError, match="no cell records"):
        render_report([tmp_path / "run"], tmp_path / "out")


def test_rerendering_into_a_folder_removes_the_plots_of_an_earlier_suite_hash_and_keeps_other_files(tmp_path):
    out = tmp_path / "out"
    old = render_report([write_synthetic_run(tmp_path / "old", suite="small", methods=["sft"], evil=False)], out)
    mine = out / "plots" / "notes-abcdef-bars.txt"
    mine.write_text("a user's file")
    new = render_report([write_synthetic_run(tmp_path / "new", methods=["sft", "uld"], evil=False)], out)
    old_plots = {p for n, p in old.items() if n.startswith("plots/")}
    new_plots = {p for n, p in new.items() if n.startswith("plots/")}
    assert old_plots and new_plots and not old_plots & new_plots
    assert all(PLOT_NAME.match(p.name) for p in old_plots | new_plots)   # the cleanup knows every name
    assert {p for p in (out / "plots").iterdir() if p.suffix == ".svg"} == new_plots
    assert mine.read_text() == "a user's file"
    page = new["leaderboard.md"].read_text()
    assert all(p.name.replace("_", "\\_") in page for p in new_plots)
