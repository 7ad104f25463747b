"""``ctkd-bench check``: (being implemented)."""
import click

from ..errors import UsageError


@click.command("check")
@click.argument("args", nargs=-1)
def command(args):
    """Not implemented yet."""
    raise UsageError("'check' is not implemented yet")
