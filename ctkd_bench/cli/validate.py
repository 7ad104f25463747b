"""``ctkd-bench validate``: (being implemented)."""
import click

from ..errors import UsageError


@click.command("validate")
@click.argument("args", nargs=-1)
def command(args):
    """Not implemented yet."""
    raise UsageError("'validate' is not implemented yet")
