"""``ctkd-bench validate SUITE``: parse and resolve a suite without training anything."""
import click

from ..errors import UsageError
from ..plugins import ALIASES, get_plugin_manager
from ..specs import resolve_suite
from ..util import did_you_mean


@click.command("validate")
@click.argument("suite")
@click.option("--profile", default=None, help="A named profile of the suite.")
def command(suite, profile):
    """Check SUITE's YAML, names, budgets and method configs; exit 2 with one line if anything is wrong."""
    spec = resolve_suite(suite, profile)
    pm = get_plugin_manager()
    known = pm.methods()
    for name, overrides in spec.method_configs:
        if ALIASES.get(name.lower(), name.lower()) not in known:
            raise UsageError(f"methods.{name}: config given for an unknown method {name!r}"
                             f"{did_you_mean(name, known)}")
        pm.method(name).cls.make_config(dict(overrides), where=f"methods.{name}")
    click.echo(f"{spec.name}: ok (hash {spec.hash}; {len(spec.tracks)} tracks: "
               f"{', '.join(t.name for t in spec.tracks)}; {len(spec.seeds)} seeds; "
               f"budget {spec.budget.steps} steps x {spec.budget.examples_per_step} examples"
               f"{''.join(f'; {t.name}: {t.steps} steps' for t in spec.tracks if t.steps)})")
