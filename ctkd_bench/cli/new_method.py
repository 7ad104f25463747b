"""``ctkd-bench new-method``: scaffold a method plugin distribution that passes ``check``."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError


@click.command("new-method")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the ctkd-NAME folder.")
@click.option("--force", is_flag=True, help="Overwrite the scaffold's files in an existing folder.")
def command(name, directory, force):
    """Write ctkd-NAME/: pyproject with the entry point, the method module and its tests."""
    from ..plugins import get_plugin_manager
    from ..scaffold import names_for, write

    values = names_for(name)
    taken = get_plugin_manager().methods().get(name)
    if taken is not None:
        raise UsageError(f"method name {name!r} is already registered by {taken.plugin.distribution} "
                         f"({taken.plugin.module}); pick another name")
    target = write(name, directory, force)
    click.echo(f"Created {target}/ for method {name!r}:")
    for rel in ("pyproject.toml", f"{values['package']}/method.py", f"tests/test_{values['package']}.py"):
        click.echo(f"  {target / rel}")
    click.echo("Next:\n"
               f"  pip install -e {target}\n"
               f"  ctkd-bench check {name}\n"
               f"  python -m pytest {target / 'tests'}")
