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


@hookspec
def ctkd_register_executors(register):
    """Register executors (where a run's cells execute): call ``register(ExecutorClass)`` for each.

    An executor subclasses ``ctkd_bench.run.executors.Executor`` and has a unique ``name``."""


@hookspec
def ctkd_register_model_sources(register):
    """Register model sources: call ``register(scheme, resolver)`` for each.

    ``resolver(spec, cache) -> Path`` turns a model or tokenizer spec whose
    ``source`` is ``scheme`` (its ``path`` is the part after ``scheme:``) into a
    local folder holding the model (safetensors) and tokenizer files; ``cache``
    is the ctkd-bench cache root, for sources that download or convert. Loading
    the folder stays in the core (`ctkd_bench.models.sources.load_pretrained`).
    """
