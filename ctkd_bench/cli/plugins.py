"""``ctkd-bench plugins``: list loaded plugins and what they registered."""
import json

import click

from ..plugins import get_plugin_manager


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json):
    """List the plugins loaded through the ``ctkd_bench`` entry-point group."""
    pm = get_plugin_manager()
    methods = pm.methods()
    suites = pm.suites()
    rows = []
    for info in pm.plugins.values():
        rows.append({
            "name": info.name, "distribution": info.distribution, "version": info.version,
            "module": info.module,
            "methods": sorted(k for k, m in methods.items() if m.plugin == info),
            "suites": sorted(k for k, (_, i) in suites.items() if i == info),
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        what = ", ".join(r["methods"] + r["suites"]) or "-"
        click.echo(f"{r['name']:<14} {r['distribution']} {r['version']:<10} {what}")
