"""``ctkd-bench suites``: list the available suites."""
import json

import click

from ..specs import available_suites, load_suite


@click.command("suites")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json):
    """List suites shipped with ctkd-bench and by plugins."""
    rows = []
    for name, path in available_suites().items():
        try:
            spec = load_suite(path)
            rows.append({"name": name, "path": str(path), "hash": spec.hash, "description": spec.description,
                         "tracks": [t.name for t in spec.tracks], "seeds": list(spec.seeds)})
        except Exception as exc:  # list broken suites too, with the reason
            rows.append({"name": name, "path": str(path), "error": str(exc)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']:<12} INVALID: {r['error']}")
        else:
            click.echo(f"{r['name']:<12} {','.join(r['tracks']):<28} {r['description']}")
