"""Evaluate a causal model on a track through lm-eval's Python API, fully offline.

Each track becomes a local lm-eval task (``dataset_path: json`` with
``data_files``) written into a temp folder. lm-eval runs the model; the
suite's own metric code scores the logged samples where lm-eval has no
metric of its own (final-answer exact match, ROUGE-L).
"""
from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from ..util import stable_hash
from . import metrics as M

TASK_KINDS = {"lm": "loglikelihood_rolling", "math": "generate_until", "instruct": "generate_until"}
PRIMARY = {"lm": ("bits_per_byte", False), "math": ("exact_match", True), "instruct": ("rouge_l", True),
           "embed": ("accuracy", True)}


def stop_strings(task: str, stop: str, eos: str) -> list[str]:
    """Where generation ends: the task's default (math: a blank line, instruct: a newline), or the
    track's `stop` ("eos": only the end-of-sequence token, e.g. multi-line Dolly answers), plus EOS."""
    if stop == "eos":
        until = [eos]
    elif stop:
        until = [stop, eos]
    else:
        until = ["\n\n", eos] if task == "math" else ["\n", eos]
    return [u for u in until if u]


def _task_yaml(task: str, name: str, data_file: Path, max_new_tokens: int, eos: str, stop: str = "") -> str:
    head = (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data_file))}\n"
            "test_split: test\n")
    if task == "lm":
        return head + ('output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{response}}"\n'
                       "metric_list:\n  - metric: bits_per_byte\n  - metric: byte_perplexity\n"
                       "    higher_is_better: false\n")
    return head + ('output_type: generate_until\ndoc_to_text: "{{prompt}}"\ndoc_to_target: "{{response}}"\n'
                   f"generation_kwargs:\n  until: {json.dumps(stop_strings(task, stop, eos))}\n"
                   f"  max_gen_toks: {max_new_tokens}\n  do_sample: false\n"
                   "metric_list:\n  - metric: exact_match\n")


def _score_samples(task: str, samples: list[dict]) -> dict[str, float]:
    preds = [s["filtered_resps"][0] if s["filtered_resps"] else "" for s in samples]
    docs = [s["doc"] for s in samples]
    if task == "math":
        hits = [M.answer_match(p, str(d.get("answer") or M.extract_final_answer(d["response"])))
                for p, d in zip(preds, docs)]
        return {"exact_match": sum(hits) / max(1, len(hits))}
    rouge = [M.rouge_l(p.strip(), d["response"].strip()) for p, d in zip(preds, docs)]
    exact = [M.exact_match(p, d["response"]) for p, d in zip(preds, docs)]
    f1 = [M.token_f1(p, d["response"]) for p, d in zip(preds, docs)]
    return {"rouge_l": sum(rouge) / max(1, len(rouge)), "exact_match": sum(exact) / max(1, len(exact)),
            "f1": sum(f1) / max(1, len(f1))}


_ENV_INFO: dict = {}
_GIT: dict = {}


def _memoised_env_info(original):
    """lm-eval's `add_env_info` runs `pip list` and friends in subprocesses (~1-4 s) on every
    `simple_evaluate`; the environment does not change within a process, so collect it once."""
    def add_env_info(storage: dict) -> None:
        if not _ENV_INFO:
            original(_ENV_INFO)
        storage.update(_ENV_INFO)
    add_env_info.memoised = True
    return add_env_info


def quiet_git_hash() -> str | None:
    """Stands in for lm-eval's `get_git_commit_hash`, which runs `git describe` in the working
    directory on every `simple_evaluate`: outside a repository git printed "fatal: not a git
    repository" once per evaluated cell. Asked once per process, its complaint kept off the
    terminal (the hash only labels lm-eval's own result dict; cell provenance records its own)."""
    if "hash" not in _GIT:
        try:
            done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True)
            _GIT["hash"] = done.stdout.strip() if done.returncode == 0 else None
        except OSError:   # no git on the machine
            _GIT["hash"] = None
    return _GIT["hash"]


def eval_tokenizer(tokenizer):
    """A copy of `tokenizer` that encodes text as the trainer does (`data.collate.encode_causal`):
    BOS (when the tokenizer has one) + text, never EOS. Tokenizers built for encoder use too (e.g.
    the Unigram template ``<s> $A </s>``) would otherwise end every prompt with EOS, and the
    byte-level ones would drop the BOS the models were trained after."""
    from tokenizers import processors

    eval_tok = copy.deepcopy(tokenizer)
    bos = eval_tok.bos_token if eval_tok.bos_token_id is not None else None
    single, pair = (f"{bos} $A", f"{bos} $A $B:1") if bos else ("$A", "$A $B:1")
    specials = [(bos, eval_tok.bos_token_id)] if bos else []
    eval_tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=specials)
    return eval_tok


def evaluate_causal(model, tokenizer, task: str, examples: list[dict], max_new_tokens: int,
                    batch_size: int, max_length: int, device: str = "cpu",
                    stop: str = "") -> tuple[dict[str, float], dict]:
    """Metrics for `model` on `examples` of a causal `task`, and lm-eval's own results + hashes."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    import lm_eval.evaluator
    if not getattr(lm_eval.evaluator.add_env_info, "memoised", False):
        lm_eval.evaluator.add_env_info = _memoised_env_info(lm_eval.evaluator.add_env_info)
    lm_eval.evaluator.get_git_commit_hash = quiet_git_hash
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    name = f"ctkd_{task}_{stable_hash([e['id'] for e in examples], 8)}"
    with tempfile.TemporaryDirectory(prefix="ctkd-lmeval-") as tmp:
        data_file = Path(tmp) / "test.jsonl"
        data_file.write_text("".join(json.dumps({k: v for k, v in e.items()}) + "\n" for e in examples))
        eos = tokenizer.eos_token or ""
        yaml_text = _task_yaml(task, name, data_file, max_new_tokens, eos, stop)
        (Path(tmp) / f"{name}.yaml").write_text(yaml_text)
        # Generation contexts get BOS from the tokenizer; rolling log-likelihoods get it as lm-eval's
        # prefix token, so the text itself is encoded without specials there (no BOS scored).
        lm = HFLM(pretrained=model, tokenizer=eval_tokenizer(tokenizer), batch_size=batch_size,
                  max_length=max_length, device=device, add_bos_token=task != "lm")
        result = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=TaskManager(include_path=tmp, include_defaults=False),
                                         log_samples=True, verbosity="ERROR")
    own = result["results"][name]
    if task == "lm":
        metrics = {"bits_per_byte": float(own["bits_per_byte,none"])}
    else:
        metrics = _score_samples(task, result["samples"][name])
    meta = {
        "results": {k: v for k, v in own.items() if isinstance(v, (int, float, str))},
        "task_hash": stable_hash(yaml_text.replace(str(data_file), "test.jsonl") + stable_hash(examples)),
        "doc_hashes": stable_hash([s.get("doc_hash") for s in result["samples"][name]]),
        "lm_eval_version": getattr(lm_eval, "__version__", ""),
    }
    return metrics, meta
