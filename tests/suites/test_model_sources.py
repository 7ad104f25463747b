"""Model sources: the `from:` shorthand, scheme dispatch through the hook, and the one loading path."""
import copy
import sys
import types

import pytest
import torch
import yaml

import ctkd_bench.plugins as plugins
from ctkd_bench.errors import ConfigError, PluginError, UsageError
from ctkd_bench.hookspecs import hookimpl
from ctkd_bench.models.build import ArchSpec, build_model
from ctkd_bench.models.registry import resolve_folder
from ctkd_bench.models.sources import fresh_student, load_pretrained, load_tokenizer
from ctkd_bench.models.tokenizers import train_tokenizer
from ctkd_bench.specs import ModelSpec, TokenizerSpec, builtin_suite_dir, parse_suite

TEXTS = ["the cat sat on the mat", "a dog ran to the park", "two plus three is five"] * 20


@pytest.fixture
def tiny_data():
    return yaml.safe_load((builtin_suite_dir() / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small llama + its tokenizer saved as a safetensors folder."""
    folder = tmp_path_factory.mktemp("model")
    tok = train_tokenizer("bpe", TEXTS, 300, folder)
    model = build_model(ArchSpec("llama", 16, 1, 2, 64), tok, seed=3)
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


def _with_model(data, name, entry):
    out = copy.deepcopy(data)
    out["models"][name] = entry
    return out


def test_from_shorthand_equals_explicit_fields(tiny_data, saved_model):
    folder = str(saved_model[0])
    short = parse_suite(_with_model(tiny_data, "student-llama", {"from": f"local:{folder}"}))
    explicit = parse_suite(_with_model(tiny_data, "student-llama", {"source": "local", "path": folder}))
    assert short.model("student-llama") == explicit.model("student-llama")
    assert short.model("student-llama").source == "local" and short.model("student-llama").path == folder
    assert short.hash == explicit.hash
    built = parse_suite(_with_model(tiny_data, "student-llama", {"from": "build:", "tokenizer": "unigram-800"}))
    assert built.model("student-llama").source == "build"


@pytest.mark.parametrize("entry, field, hint", [
    ({"from": "pip-guff:x/y.gguf"}, "tiny.models.student-llama.from", "did you mean 'pip-gguf'"),
    ({"from": "Qwen/Qwen1.5"}, "tiny.models.student-llama.from", "<scheme>:<location>"),
    ({"from": "local:/x", "source": "local"}, "tiny.models.student-llama.from", "not both"),
    ({"from": "hf:"}, "tiny.models.student-llama.path", "needs a location"),
    ({"from": "pip-gguf:just-a-file.gguf"}, "tiny.models.student-llama.path", "<pip distribution>/"),
    ({"source": "lokal", "path": "/x"}, "tiny.models.student-llama.source", "did you mean 'local'"),
])
def test_bad_sources_name_the_field(tiny_data, entry, field, hint):
    with pytest.raises(ConfigError) as err:
        parse_suite(_with_model(tiny_data, "student-llama", entry), where="tiny")
    assert str(err.value).startswith(field) and hint in str(err.value)


def test_tokenizer_sources(tiny_data):
    data = copy.deepcopy(tiny_data)
    data["tokenizers"]["gpt2-real"] = {"from": "realtok:gpt2"}
    assert parse_suite(data).tokenizer("gpt2-real") == TokenizerSpec("gpt2-real", source="realtok", path="gpt2")
    data["tokenizers"]["gpt2-real"] = {"from": "realtok:gpt3"}
    with pytest.raises(ConfigError, match=r"^tiny\.tokenizers\.gpt2-real\.path: 'gpt3' is not one of .*gpt2"):
        parse_suite(data, where="tiny")


class _ToySource:
    calls = []

    @staticmethod
    @hookimpl
    def ctkd_register_model_sources(register):
        def resolve(spec, cache):
            _ToySource.calls.append((spec.name, spec.path, cache))
            return cache / "toy" / spec.path
        register("toy", resolve)


def _plugin(name, hook):
    module = types.ModuleType(name)
    module.ctkd_register_model_sources = hook
    return module


def _manager_with(monkeypatch, *extra):
    pm = plugins.PluginManager(load_entry_points=False)
    for module in extra:
        pm.add(module)
    monkeypatch.setattr(plugins, "get_plugin_manager", lambda: pm)
    return pm


def test_plugin_source_dispatch(monkeypatch, tiny_data, tmp_path):
    toy = _plugin("toy_source", _ToySource.ctkd_register_model_sources)
    pm = _manager_with(monkeypatch, toy)
    assert {"build", "local", "hf", "pip", "pip-gguf", "toy"} <= set(pm.model_sources())
    assert pm.model_sources()["local"][1].distribution == "ctkd-bench"   # built-ins: the same hook
    spec = parse_suite(_with_model(tiny_data, "student-llama", {"from": "toy:abc"})).model("student-llama")
    assert resolve_folder(spec, tmp_path) == tmp_path / "toy" / "abc"
    assert _ToySource.calls[-1] == ("student-llama", "abc", tmp_path)


def test_unregistered_scheme_is_unknown_without_the_plugin(monkeypatch, tiny_data):
    _manager_with(monkeypatch)
    with pytest.raises(ConfigError, match=r"from: unknown source 'toy'"):
        parse_suite(_with_model(tiny_data, "student-llama", {"from": "toy:abc"}))


def test_registering_a_scheme_twice_is_an_error(monkeypatch):
    twice = _plugin("twice_source", hookimpl(lambda register: register("local", lambda spec, cache: cache)))
    pm = _manager_with(monkeypatch, twice)
    with pytest.raises(PluginError, match="'local' is registered twice"):
        pm.model_sources()


def test_local_round_trip(saved_model, tmp_path):
    folder, model = saved_model
    spec = ModelSpec("student", source="local", path=str(folder))
    loaded = fresh_student(spec, None, seed=0, encoder=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    tok = load_tokenizer(TokenizerSpec("t", source="local", path=str(folder)), tmp_path, lambda: [])
    assert tok.encode("the cat") == train_tokenizer("bpe", TEXTS, 300, tmp_path / "again").encode("the cat")


def test_pretrained_student_head_is_seeded(saved_model):
    spec = ModelSpec("student", source="local", path=str(saved_model[0]))
    a, b = (fresh_student(spec, None, seed=5, encoder=True, num_labels=3) for _ in range(2))
    c = fresh_student(spec, None, seed=6, encoder=True, num_labels=3)
    assert torch.equal(a.score.weight, b.score.weight) and not torch.equal(a.score.weight, c.score.weight)


def test_missing_local_folder_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^models\.student\.path: folder .* does not exist"):
        fresh_student(ModelSpec("student", source="local", path=str(tmp_path / "nope")), None, 0, False)


def test_hf_offline_is_one_clear_line(tmp_path, monkeypatch):
    # conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported
    pytest.importorskip("huggingface_hub")
    spec = ModelSpec("teacher", source="hf", path="ctkd-bench-test/absent-model")
    with pytest.raises(UsageError) as err:
        resolve_folder(spec, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "ctkd-bench-test/absent-model" in msg and "'local:<folder>'" in msg
    assert msg.startswith("models.teacher:")


def test_pickle_only_folder_is_refused(saved_model, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((saved_model[0] / "config.json").read_text())
    torch.save(saved_model[1].state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UsageError, match=r"only pickle weights \(pytorch_model\.bin\); .*safetensors only"):
        load_pretrained(folder, encoder=False)


def test_remote_code_never_runs_unless_the_suite_says_so(saved_model, tmp_path):
    import json
    import shutil
    folder = tmp_path / "remote"
    shutil.copytree(saved_model[0], folder)
    sentinel = tmp_path / "custom-code-ran"
    (folder / "custom_model.py").write_text(
        f"open({str(sentinel)!r}, 'w').write('ran')\n"
        "from transformers import LlamaForCausalLM\nclass CustomModel(LlamaForCausalLM):\n    pass\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "custom_model.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        model = load_pretrained(folder, encoder=False)   # trust_remote_code defaults to False
        assert type(model).__module__.startswith("transformers.")
    except ValueError:
        pass   # refusing is as good as ignoring the custom code
    assert not sentinel.exists()
    assert "custom_model" not in sys.modules
    # positive control: the sentinel does fire when the suite allows remote code
    load_pretrained(folder, encoder=False, trust_remote_code=True)
    assert sentinel.exists()
