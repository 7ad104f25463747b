"""Several evaluation sets per track (DSKD's five instruction sets): per-set metrics plus their mean."""
from __future__ import annotations

from typing import Callable, Mapping


def evaluate_sets(evaluate_one: Callable[[list[dict]], tuple[dict, dict]],
                  sets: Mapping[str, list[dict]]) -> tuple[dict[str, float], dict]:
    """Metrics ``<metric>/<set>`` for every set and ``<metric>`` = the unweighted mean over the sets
    (as papers average per-benchmark scores); lm-eval metadata under ``sets.<set>``."""
    per_set, meta = {}, {}
    for name, examples in sets.items():
        per_set[name], meta[name] = evaluate_one(examples)
    names = list(per_set)
    shared = [k for k in per_set[names[0]] if all(k in per_set[n] for n in names)]
    metrics = {k: sum(per_set[n][k] for n in names) / len(names) for k in shared}
    for name, values in per_set.items():
        metrics.update({f"{k}/{name}": v for k, v in values.items()})
    return metrics, {"sets": meta}
