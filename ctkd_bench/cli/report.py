"""``ctkd-bench report``: (being implemented)."""
import click

from ..errors import UsageError


@click.command("report")
@click.argument("args", nargs=-1)
def command(args):
    """Not implemented yet."""
    raise UsageError("'report' is not implemented yet")
