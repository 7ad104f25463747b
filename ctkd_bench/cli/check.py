"""``ctkd-bench check``: run the method conformance kit (see `ctkd_bench.testing`)."""
from __future__ import annotations

import json

import click
import yaml

from ..errors import UsageError


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


@click.command("check")
@click.argument("methods", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Check every registered method.")
@click.option("--track", "tracks", multiple=True,
              help="Only this track or family (causal, encoder); repeatable.")
@click.option("--only", multiple=True, help="Only this check (see --list); repeatable.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a method config field (value parsed as YAML); repeatable.")
@click.option("--seed", default=0, show_default=True, help="Seed for setup and each step.")
@click.option("--no-overhead", is_flag=True, help="Skip the step-time measurement.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--list", "list_checks", is_flag=True, help="List the checks and exit.")
@click.pass_context
def command(ctx, methods, check_all, tracks, only, overrides, seed, no_overhead, as_json, list_checks):
    """Check that METHODS follow the method contract, on toy models with real, differing tokenizers.

    Exits with status 1 when a check fails; each failure says what to fix.
    """
    from ..plugins import get_plugin_manager
    from ..testing import CHECKS, check_method, families

    if list_checks:
        for name, what in CHECKS.items():
            click.echo(f"{name:<20} {what}")
        return
    unknown = set(only) - set(CHECKS)
    if unknown:
        raise UsageError(f"unknown check(s) {', '.join(sorted(unknown))}; see ctkd-bench check --list")
    pm = get_plugin_manager()
    names = list(pm.methods()) if check_all else list(methods)
    if not names:
        raise UsageError("name a method to check (see ctkd-bench methods) or pass --all")
    config = _overrides(overrides)
    if config and len(names) > 1:
        raise UsageError("--set applies to one method; check one method at a time")
    reports = []
    for name in names:
        cls = pm.method(name).cls  # unknown names: one-line error with a suggestion
        if config:
            cls.make_config(config)  # a bad field is a usage error, not a failed check
        if tracks and not families(cls.tracks, tracks):
            raise UsageError(f"{name} declares tracks {', '.join(cls.tracks)}; none matches "
                             f"--track {' '.join(tracks)}")
        report = check_method(name, config=config or None, tracks=tracks or None, only=only or None,
                              seed=seed, overhead=not no_overhead)
        reports.append(report)
        if not as_json:
            click.echo(report.format())
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    if any(not r.ok for r in reports):
        ctx.exit(1)
