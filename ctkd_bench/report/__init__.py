"""The leaderboard report: reads run directories (never live objects) and writes
index.html (self-contained, sortable, inline SVG plots) and leaderboard.md (GitHub).

Entry point: `ctkd_bench.report.render.render_report(run_dirs, out_dir)`.
"""
