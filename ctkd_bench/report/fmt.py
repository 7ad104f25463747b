"""Number formatting shared by the HTML page, the markdown table and the plots."""
from __future__ import annotations

import math
from urllib.parse import urlparse

from .stats import Estimate

COST_LABELS = {  # cost key -> (column label, formatter name)
    "steps": ("steps", "count"),
    "examples": ("examples", "count"),
    "bytes": ("bytes seen", "bytes"),
    "teacher_tokens": ("teacher tokens", "count"),
    "extra_params": ("extra params", "count"),
    "wall_prepare_s": ("prepare time", "seconds"),
    "wall_train_s": ("train time", "seconds"),
    "wall_eval_s": ("eval time", "seconds"),
    "peak_mem_mb": ("peak memory", "megabytes"),
}


def number(value: float, digits: int = 3) -> str:
    """A score: fixed decimals below 1000, thousands separators above."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


NBSP = "\u00a0"   # keeps "0.512 ± 0.004" on one line in narrow table cells


def estimate(est: Estimate, digits: int = 3) -> str:
    if est.half_width is None:
        return f"{number(est.mean, digits)}{NBSP}(1{NBSP}seed)"
    return f"{number(est.mean, digits)}{NBSP}±{NBSP}{number(est.half_width, digits)}"


def percent(value: float) -> str:
    rounded = round(100 * value)
    return f"{rounded + 0:d}%"   # + 0: no "-0%" for a tiny negative


def rank(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def count(value: float) -> str:
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else f"{int(value)}"


def bytes_(value: float) -> str:
    for limit, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= limit:
            return f"{value / limit:.3g} {suffix}"
    return f"{int(value)} B"


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{int(value // 3600)}h {int(value % 3600 // 60):02d}m"
    if value >= 60:
        return f"{int(value // 60)}m {int(value % 60):02d}s"
    return f"{value:.3g} s"


def megabytes(value: float) -> str:
    return f"{value / 1024:.3g} GiB" if value >= 1024 else f"{value:.0f} MiB"


FORMATTERS = {"count": count, "bytes": bytes_, "seconds": seconds, "megabytes": megabytes}


def cost(key: str, value: float) -> str:
    kind = COST_LABELS.get(key, (key, "count"))[1]
    return FORMATTERS[kind](value)


def cost_label(key: str) -> str:
    return COST_LABELS.get(key, (key.replace("_", " "), ""))[0]


def safe_url(url: str) -> str:
    """The URL when it is plain http(s); '' otherwise (a plugin must not inject javascript:)."""
    if not isinstance(url, str):
        return ""
    try:
        scheme = urlparse(url.strip()).scheme.lower()
    except ValueError:
        return ""
    return url.strip() if scheme in ("http", "https") else ""


def first_line(text: str | None, limit: int = 120) -> str:
    """One line that says what went wrong: a traceback's last line, else the first line."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
