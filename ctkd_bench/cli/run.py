"""``ctkd-bench run``: (being implemented)."""
import click

from ..errors import UsageError


@click.command("run")
@click.argument("args", nargs=-1)
def command(args):
    """Not implemented yet."""
    raise UsageError("'run' is not implemented yet")
