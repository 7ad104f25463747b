"""Two CPU processes (gloo DDP through accelerate) train each cell together: same cells, same budget."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaleout_helpers import records

pytestmark = pytest.mark.slow
TINY = Path(__file__).resolve().parents[2] / "suites" / "tiny.yaml"


def embed_only_suite_file(path: Path) -> Path:
    """tiny.yaml cut to its embed track (the same suite as scaleout_helpers.embed_suite, so the same cell ids)."""
    data = yaml.safe_load(TINY.read_text())
    data["tracks"] = {"embed": data["tracks"]["embed"]}
    data["profiles"]["test"]["tracks"] = {"embed": data["profiles"]["test"]["tracks"]["embed"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_two_process_ddp_run_writes_each_cell_once_with_the_global_budget(baseline, cache, tmp_path):
    suite = embed_only_suite_file(tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    env = dict(os.environ, CTKD_CACHE=str(cache), CTKD_ACCELERATE="1", OMP_NUM_THREADS="1", CTKD_PROGRESS="0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "ctkd_bench", "run", str(suite), "--profile", "test", "--methods", "sft,emo", "--out", str(out),
           "--no-report"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("cells: 4 ok") == 1          # rank 0 reports, rank 1 stays quiet
    got = records(out)
    assert set(got) == set(baseline)                      # the same cell ids as the single-process run
    for record in got.values():
        assert record["status"] == "ok" and record["machine"]["processes"] == 2, record.get("reason")
    sft = next(r for r in got.values() if r["method"] == "sft")
    assert sft["costs"]["steps"] == 6 and sft["costs"]["examples"] == 24   # 2 ranks x 2 rows x 6 steps
    # SFT's loss is a mean over examples, so averaging the two ranks' gradients is the one-process step
    want = next(r for r in baseline.values() if r["method"] == "sft")
    assert sft["metrics"] == pytest.approx(want["metrics"], rel=1e-4, abs=1e-5)
    assert json.loads((out / "run.json").read_text())["suite_hash"] == sft["suite_hash"]
