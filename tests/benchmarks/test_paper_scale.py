"""benchmarks/paper_scale.py at toy size: stand-in Qwen -> GPT-2 with the real tokenizers, through
the project's pipeline (suite file, teacher cache, trainer), SFT and ULD timed side by side."""
import json

import pytest


@pytest.fixture(scope="module")
def standin_dir(tmp_path_factory, paper_scale):
    from ctkd_bench.align.realtok import TokenizerUnavailable
    from ctkd_bench.testing.standin import build_standins

    try:  # real tokenizers are built into the ambient $CTKD_CACHE once (shared with the paper tests)
        return build_standins(tmp_path_factory.mktemp("standin"), tuple(paper_scale.STANDIN_NAMES.values()))
    except TokenizerUnavailable as err:
        pytest.skip(str(err))


def test_paper_scale_times_sft_and_uld_on_real_vocabularies(paper_scale, standin_dir, isolated_cache, capsys):
    rows = paper_scale.main(["--length", "32", "--batch", "2", "--steps", "1", "--warmup", "1", "--rounds", "1",
                             "--methods", "sft,uld", "--standin-dir", str(standin_dir)])
    by_name = {r["method"]: r for r in rows}
    assert list(by_name) == ["sft", "uld"]
    assert all(r["ms"] > 0 for r in rows)
    assert all(r["tokens"] == 2 * 32 for r in rows)   # every example filled to exactly --length tokens
    assert by_name["sft"]["x_sft"] == 1.0 and by_name["sft"]["own_ms"] == 0.0
    uld = by_name["uld"]
    assert uld["official_s"] == 13.0
    assert uld["own_ms"] == pytest.approx(uld["ms"] - by_name["sft"]["ms"])
    out = capsys.readouterr().out
    assert "vocabulary 50257" in out and "vocabulary 151646" in out
    assert [line.split()[0] for line in out.splitlines()[-2:]] == ["sft", "uld"]


def test_widened_standin_keeps_class_layers_and_tokenizer(paper_scale, standin_dir, tmp_path):
    src = standin_dir / "models" / "gpt2-gpt2"
    out = paper_scale.widened(src, 32, tmp_path / "gpt2-32")
    old, new = (json.loads((f / "config.json").read_text()) for f in (src, out))
    assert new["n_embd"] == 32 and old["n_embd"] == 16
    assert {k: v for k, v in new.items() if k != "n_embd"} == {k: v for k, v in old.items() if k != "n_embd"}
    assert (out / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()
