"""Magic numbers live here, named, in one place."""
import os
from pathlib import Path

API_VERSION = 1  # method-plugin API; bump when the Method contract changes incompatibly
IGNORE_INDEX = -100  # HF label convention for "not a target"
ENTRY_POINT_GROUP = "ctkd_bench"

CAUSAL_TRACKS = ("lm", "math", "instruct")
ENCODER_TRACKS = ("embed",)
ALL_TRACKS = CAUSAL_TRACKS + ENCODER_TRACKS

CATEGORIES = (
    "probability-distribution alignment",
    "multi-level alignment",
    "reasoning alignment",
    "text alignment",
    "baseline",
)

SIGNAL_KINDS = (
    "logits", "topk", "token_logprobs", "hidden_states", "attentions",
    "embeddings", "lm_head", "generations", "offsets",
)

DEFAULT_TOPK = 20
GRAD_CLIP = 1.0
WEIGHT_DECAY = 0.01
CELL_TIMEOUT_S = 3600


def cache_root() -> Path:
    """Where built tokenizers, teachers and teacher signals are cached ($CTKD_CACHE)."""
    env = os.environ.get("CTKD_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ctkd-bench"
