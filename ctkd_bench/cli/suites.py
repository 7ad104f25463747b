"""``ctkd-bench suites``: (being implemented)."""
import click

from ..errors import UsageError


@click.command("suites")
@click.argument("args", nargs=-1)
def command(args):
    """Not implemented yet."""
    raise UsageError("'suites' is not implemented yet")
