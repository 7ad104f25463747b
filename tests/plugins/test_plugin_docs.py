"""docs/plugins.md stays true: its code is the example's code, every hook, check and need is documented."""
import dataclasses
import inspect

from ctkd_bench import hookspecs
from ctkd_bench.defaults import ENTRY_POINT_GROUP
from ctkd_bench.method import Needs
from ctkd_bench.testing import CHECKS
from doc_includes import DOC, REPO, blocks, synced

TEXT = DOC.read_text(encoding="utf-8")


def test_tutorial_code_is_the_example_distribution_verbatim():
    shown = dict(blocks(TEXT))
    example = REPO / "plugins" / "examples" / "spankl"
    expected = {str(p.relative_to(REPO)) for p in example.rglob("*") if p.suffix in (".py", ".toml")
                and "__pycache__" not in p.parts and p.name != "__init__.py"}
    assert set(shown) == expected
    assert TEXT == synced(TEXT), "docs/plugins.md is stale: run python tests/plugins/doc_includes.py"


def test_every_hookspec_is_documented_with_its_exact_arguments():
    specs = [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, f"{ENTRY_POINT_GROUP}_spec")]
    assert {name for name, _ in specs} >= {"ctkd_register_methods", "ctkd_register_suites"}
    for name, fn in specs:
        args = ", ".join(inspect.signature(fn).parameters)
        assert f"`{name}({args})`" in TEXT, f"hook {name}({args}) is not documented in {DOC.name}"


def test_every_check_and_every_need_is_documented():
    for check in CHECKS:
        assert f"| `{check}` |" in TEXT, f"check {check!r} is missing from the table"
    for field in dataclasses.fields(Needs):
        assert f"| `{field.name}` |" in TEXT, f"Needs.{field.name} is missing from the table"


def test_plugin_selection_variables_are_documented():
    assert "`CTKD_LOAD_PLUGINS`" in TEXT and "`CTKD_DISABLED_PLUGINS`" in TEXT
