"""The hooks a ctkd-bench plugin can implement.

Every hook receives a `register` callback (or the click group) rather than
returning values, so one plugin can register any number of things.
"""
import pluggy

from .defaults import ENTRY_POINT_GROUP

hookspec = pluggy.HookspecMarker(ENTRY_POINT_GROUP)
hookimpl = pluggy.HookimplMarker(ENTRY_POINT_GROUP)


@hookspec
def ctkd_register_methods(register):
    """Register distillation methods: call ``register(MethodClass)`` for each."""


@hookspec
def ctkd_register_suites(register):
    """Register suites shipped by a plugin: call ``register(path_to_yaml)`` for each."""


@hookspec
def ctkd_register_commands(cli):
    """Add subcommands to the ``ctkd-bench`` click group ``cli``."""
