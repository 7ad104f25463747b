"""Progress bars for long phases (tqdm; quiet when not on a terminal unless forced)."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def quiet_libraries() -> None:
    """Silence per-call progress bars of datasets (lm-eval loads each task's jsonl)."""
    try:
        import datasets
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


def bar(total: int, desc: str):
    disable = os.environ.get("CTKD_PROGRESS", "auto") == "0" or (
        os.environ.get("CTKD_PROGRESS", "auto") == "auto" and not sys.stderr.isatty())
    return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)
