"""The ``ctkd-bench`` command line: one module per subcommand.

Usage and config errors print one line and exit with status 2 (no traceback); so do a full
disk and a read-only run directory (records finished before stay; rerunning resumes).
"""
from __future__ import annotations

import sys

import click

from ..errors import UsageError


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:  # the machine's fault (disk full, read-only): one line too
            from ..run.guards import ENVIRONMENT_ERRNOS
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror}; what was finished is kept, rerun to resume", err=True)
            ctx.exit(2)


@click.group(cls=Group)
@click.version_option(package_name="ctkd-bench")
def cli():
    """Benchmark cross-tokenizer knowledge distillation methods head to head."""


def _add_builtin_commands() -> None:
    from . import check, methods, new_method, plugins, report, run, suites, validate
    for module in (methods, suites, plugins, validate, run, report, check, new_method):
        cli.add_command(module.command)


def main(argv=None) -> None:
    _add_builtin_commands()
    try:
        from ..plugins import get_plugin_manager
        get_plugin_manager().register_commands(cli)
    except UsageError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    cli.main(args=argv, prog_name="ctkd-bench")
