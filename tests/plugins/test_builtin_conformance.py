"""Every built-in method passes the conformance kit on each track family it declares.

Methods are found through the plugin manager, exactly as users' methods are; one
that does not register (yet) is simply absent. Step-time overheads vs SFT are
printed in the terminal summary, not asserted.
"""
import pytest

from ctkd_bench.plugins import BUILTIN_DISTRIBUTION, get_plugin_manager
from ctkd_bench.testing import families

pytest_plugins = ["ctkd_bench.testing"]

BUILTIN = [(name, family) for name, reg in get_plugin_manager().methods().items()
           if reg.plugin.distribution == BUILTIN_DISTRIBUTION
           for family, _ in families(reg.cls.tracks)]


@pytest.mark.parametrize("name, family", BUILTIN, ids=[f"{n}-{f}" for n, f in BUILTIN])
def test_builtin_method_conforms(ctkd_check, name, family):
    report = ctkd_check(name, tracks=[family])
    assert report.by_check("loss", family)[0].status == "pass"


def test_the_reference_methods_are_registered():
    assert ("sft", "causal") in BUILTIN and ("sft", "encoder") in BUILTIN
