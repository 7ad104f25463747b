"""Progress bars for long phases (tqdm; quiet when not on a terminal unless forced)."""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def bar(total: int, desc: str):
    disable = os.environ.get("CTKD_PROGRESS", "auto") == "0" or (
        os.environ.get("CTKD_PROGRESS", "auto") == "auto" and not sys.stderr.isatty())
    return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)
