"""Third-party method plugins end to end: install, list, check, collide, select, scaffold.

One session-wide install (``pip install --target``) holds the example distribution
(plugins/examples/spankl) and a throwaway distribution written by
``ctkd-bench new-method``; see plugin_dists.py for why nothing touches the global
environment.
"""
import csv
import json
import sys

import pytest

from ctkd_bench.cli import main
from ctkd_bench.plugins import PluginManager
from ctkd_bench.scaffold import render
from plugin_dists import EXAMPLE, Site, copy_source, on_sys_path, pip_install_target, run_cli, write_dist_info

THROWAWAY = "throwaway-kd"


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin-dists")
    example = copy_source(EXAMPLE, root / "src" / "spankl")
    try:
        main(["new-method", THROWAWAY, "--dir", str(root / "src")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    throwaway = root / "src" / f"ctkd-{THROWAWAY}"
    pip_install_target([example, throwaway], root / "site")
    return Site(root / "site", {"ctkd-spankl": example, f"ctkd-{THROWAWAY}": throwaway})


@pytest.fixture
def collision(tmp_path):
    """A second installed distribution that registers a method called 'spankl' too."""
    code = ("from ctkd_bench import hookimpl\nfrom ctkd_methods.sft import SFT\n\n"
            "class Clash(SFT):\n    name = 'spankl'\n\n"
            "@hookimpl\ndef ctkd_register_methods(register):\n    register(Clash)\n")
    return write_dist_info(tmp_path / "collide", "ctkd-collide", "ctkd_collide", code, {"clash": "ctkd_collide"})


def test_installed_methods_are_listed_with_their_distribution(site, capsys):
    with on_sys_path(site.path):
        code, out, err = run_cli(capsys, "methods", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["spankl"]["distribution"] == "ctkd-spankl" and rows["spankl"]["version"] == "0.1.0"
    assert rows["spankl"]["needs"] == ["topk"] and rows["spankl"]["category"] == "probability-distribution alignment"
    assert rows[THROWAWAY]["distribution"] == f"ctkd-{THROWAWAY}"
    assert "sft" in rows  # built-ins still there


def test_the_distributions_own_tests_pass_against_the_install(site):
    """The example's unit tests and the scaffold's generated tests, both using the kit as a pytest plugin."""
    tests = [str(src / "tests") for src in site.sources.values()]
    done = site.run(sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider",
                    cwd=site.path.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "skipped" not in done.stdout.splitlines()[-1]  # the entry-point tests ran too
    assert "step-time overhead vs SFT" in done.stdout       # the kit's terminal summary


def test_check_finds_installed_methods_by_name(site, capsys):
    with on_sys_path(site.path):
        code, out, err = run_cli(capsys, "check", THROWAWAY, "spankl", "--no-overhead")
    assert code == 0, out + err
    assert f"ctkd-bench check {THROWAWAY} (ctkd-{THROWAWAY} 0.1.0)" in out
    assert "ctkd-bench check spankl (ctkd-spankl 0.1.0)" in out
    assert "FAIL" not in out and out.count("14 passed, 0 failed") == 2


def test_name_collision_names_both_distributions(site, collision, capsys):
    with on_sys_path(site.path, collision):
        code, out, err = run_cli(capsys, "methods")
    assert code == 2
    assert "method name 'spankl' is registered twice" in err
    assert "ctkd-collide (ctkd_collide)" in err and "ctkd-spankl (ctkd_spankl.method)" in err
    assert "Traceback" not in err


def test_plugin_selection_by_environment(site, collision, monkeypatch):
    def names(**env):
        for var in ("CTKD_LOAD_PLUGINS", "CTKD_DISABLED_PLUGINS"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        return set(PluginManager().methods())

    with on_sys_path(site.path, collision):
        assert names(CTKD_LOAD_PLUGINS="ctkd-spankl") == {"spankl"}           # by distribution
        assert names(CTKD_LOAD_PLUGINS="spankl, sft") == {"spankl", "sft"}    # by entry-point name
        assert names(CTKD_LOAD_PLUGINS="") == set()
        every = names(CTKD_DISABLED_PLUGINS="ctkd-collide")                  # the clash is gone
        assert {"spankl", THROWAWAY, "sft"} <= every
        assert THROWAWAY not in names(CTKD_DISABLED_PLUGINS=f"ctkd-collide,{THROWAWAY}")


def test_scaffold_renders_an_installable_layout():
    files = render("my_kd-2")
    assert set(files) == {"pyproject.toml", "README.md", "ctkd_my_kd_2/__init__.py",
                          "ctkd_my_kd_2/method.py", "tests/test_ctkd_my_kd_2.py"}
    assert '[project.entry-points.ctkd_bench]\nmy_kd-2 = "ctkd_my_kd_2.method"' in files["pyproject.toml"]
    assert "class MyKd2(Method):" in files["ctkd_my_kd_2/method.py"]
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")
    assert 'pytest_plugins = ["ctkd_bench.testing"]' in files["tests/test_ctkd_my_kd_2.py"]


@pytest.mark.parametrize("args, message", [
    (["uld"], "already registered by ctkd-bench"),
    (["MyKD"], "use lower-case letters"),
    (["1kd"], "starting with a letter"),
])
def test_new_method_rejects_bad_names(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "new-method", *args, "--dir", str(tmp_path))
    assert code == 2 and message in err
    assert not any(tmp_path.iterdir())


def test_new_method_refuses_to_overwrite(capsys, tmp_path):
    assert run_cli(capsys, "new-method", "mine", "--dir", str(tmp_path))[0] == 0
    code, _, err = run_cli(capsys, "new-method", "mine", "--dir", str(tmp_path))
    assert code == 2 and "--force" in err
    assert run_cli(capsys, "new-method", "mine", "--dir", str(tmp_path), "--force")[0] == 0


@pytest.mark.slow
def test_example_method_runs_on_tiny_and_is_in_the_report(site, tmp_path):
    """The installed example trains on every causal track of `tiny` and is ranked in the report."""
    runs, report = tmp_path / "runs", tmp_path / "report"
    done = site.run("ctkd-bench", "run", "tiny", "--profile", "test", "--methods", "spankl,sft",
                    "--seeds", "0", "--out", str(runs), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(runs / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "spankl"]
    by_track = {r["track"]: r["status"] for r in rows}
    assert {by_track.get(t) for t in ("lm", "math", "instruct")} == {"ok"}, rows
    assert by_track.get("embed", "n/a") != "ok"  # spankl declares causal tracks only
    done = site.run("ctkd-bench", "report", str(runs), "--out", str(report))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    leaderboard = (report / "leaderboard.md").read_text(encoding="utf-8")
    assert "spankl" in leaderboard and "ctkd-spankl 0.1.0" in leaderboard
    assert "spankl" in (report / "index.html").read_text(encoding="utf-8")
