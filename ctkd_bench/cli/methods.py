"""``ctkd-bench methods``: list the registered distillation methods."""
import json

import click

from ..plugins import get_plugin_manager


@click.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json):
    """List registered methods with category, summary, tracks and teacher needs."""
    rows = []
    for reg in get_plugin_manager().methods().values():
        info = reg.cls.describe()
        info.update(distribution=reg.plugin.distribution, version=reg.plugin.version)
        rows.append(info)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:<14} {r['category']:<36} {','.join(r['tracks']):<24} "
                   f"[{r['distribution']} {r['version']}]")
        click.echo(f"{'':<14} {r['summary']}")
