"""Teacher training is a function of its inputs: dropout is seeded, so a cold cache rebuilds the same teacher
whatever ran before it in the process (the global RNG state)."""
import torch
from safetensors.torch import load_file

from ctkd_bench.models.tokenizers import train_tokenizer
from ctkd_bench.specs import ModelSpec, TrainSpec
from ctkd_bench.teacher.train_teacher import train_teacher

EXAMPLES = [{"prompt": f"Question: {a} plus {b}?\nAnswer:", "response": f" {a + b}"} for a in range(6) for b in range(6)]
SPEC = ModelSpec(name="t", arch="gpt2", tokenizer="bpe", hidden_size=16, num_layers=1, num_heads=2,
                 train=TrainSpec(steps=6, batch_size=4, lr=1e-2, examples=36))


def _train(tok, folder, rng_noise: int):
    torch.manual_seed(rng_noise)             # whatever the process did before
    torch.rand(rng_noise + 1)
    train_teacher(SPEC, tok, EXAMPLES, encoder=False, num_labels=0, max_length=32, folder=folder, seed=7)
    return load_file(folder / "model.safetensors")


def test_teacher_weights_do_not_depend_on_the_global_rng(tmp_path):
    tok = train_tokenizer("bpe", [e["prompt"] + e["response"] for e in EXAMPLES], 300, tmp_path / "tok")
    first, second = _train(tok, tmp_path / "a", 1), _train(tok, tmp_path / "b", 99)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_teacher_training_leaves_the_callers_rng_alone(tmp_path):
    tok = train_tokenizer("bpe", [e["prompt"] + e["response"] for e in EXAMPLES], 300, tmp_path / "tok")
    torch.manual_seed(3)
    before = torch.get_rng_state()
    train_teacher(SPEC, tok, EXAMPLES, encoder=False, num_labels=0, max_length=32, folder=tmp_path / "a", seed=7)
    assert torch.equal(torch.get_rng_state(), before)
