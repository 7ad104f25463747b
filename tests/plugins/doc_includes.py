"""Keep the code blocks of docs/plugins.md identical to the files they show.

A block is marked by an HTML comment on the line before its fence::

    <!-- include: plugins/examples/spankl/ctkd_spankl/loss.py -->
    ```python
    (the file's exact text)
    ```

``python tests/plugins/doc_includes.py`` rewrites every marked block from its
file; test_plugin_docs.py fails while any block differs from its file.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugins.md"
BLOCK = re.compile(r"<!-- include: (?P<path>\S+) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```\n", re.S)


def blocks(text: str) -> list[tuple[str, str]]:
    """(repo-relative path, block text) for each include block."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(text)]


def synced(text: str) -> str:
    """`text` with every include block replaced by its file's current content."""
    def fill(m: re.Match) -> str:
        body = (REPO / m["path"]).read_text(encoding="utf-8")
        return f"<!-- include: {m['path']} -->\n```{m['lang']}\n{body}```\n"
    return BLOCK.sub(fill, text)


if __name__ == "__main__":
    old = DOC.read_text(encoding="utf-8")
    new = synced(old)
    DOC.write_text(new, encoding="utf-8")
    print(f"{DOC}: {'updated' if new != old else 'already in sync'} ({len(blocks(new))} blocks)")
    sys.exit(0)
