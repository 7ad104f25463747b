"""Installing throwaway plugin distributions for tests, out of the global environment.

`pip install --target DIR` builds and installs real distributions (wheel build,
dist-info with entry points) into a private folder; tests put that folder on
``sys.path`` (in-process) or ``PYTHONPATH`` (subprocesses). Nothing is installed
globally, so nothing needs uninstalling even when a test run is killed.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ctkd_bench.plugins import reset_plugin_manager

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "plugins" / "examples" / "spankl"
BUILD_LITTER = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")


@dataclass
class Site:
    """A folder of installed distributions and the environment that sees them."""
    path: Path
    sources: dict[str, Path]   # distribution name -> source folder it was built from

    def env(self, **extra) -> dict[str, str]:
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)
        env["PYTHONPATH"] = os.pathsep.join([str(self.path)] + [p for p in [env.get("PYTHONPATH")] if p])
        return env

    def run(self, *args: str, cwd: Path | None = None, timeout: int = 600, **env) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=cwd, env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)


def pip_install_target(sources: list[Path], target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "--target", str(target)] + [str(s) for s in sources]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"pip install failed:\n{done.stdout}\n{done.stderr}")


def copy_source(src: Path, dst: Path) -> Path:
    """Build from a copy: pip writes build/ and *.egg-info next to the sources."""
    shutil.copytree(src, dst, ignore=BUILD_LITTER)
    return dst


def write_dist_info(root: Path, dist: str, module: str, code: str, entry_points: dict[str, str]) -> Path:
    """A minimal installed distribution by hand (module + dist-info), as pip would leave it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(code)
    info = root / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ctkd_bench]\n{lines}\n")
    return root


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """The ``ctkd-bench`` CLI in-process: (exit code, stdout, stderr)."""
    from ctkd_bench.cli import main
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@contextmanager
def on_sys_path(*paths: Path):
    """Make distributions in `paths` visible in-process; forget them (and the plugin cache) after."""
    saved = list(sys.path)
    sys.path[:0] = [str(p) for p in paths]
    importlib.invalidate_caches()
    reset_plugin_manager()
    try:
        yield
    finally:
        sys.path[:] = saved
        reset_plugin_manager()
