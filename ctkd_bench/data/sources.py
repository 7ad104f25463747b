"""Track data from outside the built-in generators: hub datasets or local jsonl files.

A track's optional ``data`` section (see docs/suites.md, "Paper suites")::

    data:
      train: {from: "hf:openai/gsm8k", name: main, split: train,
              fields: {prompt: "Question: {question}\\nAnswer:", response: " {answer}"}}
      test:                               # one source, or name -> source (several evaluation sets)
        gsm8k: {source: hf, path: openai/gsm8k, name: main, split: test, fields: {...}}

``from: "<source>:<path>"`` is shorthand for ``source`` + ``path``, as for models.
``source: hf`` loads through ``datasets.load_dataset(path, name, split=..., data_files=...)``
lazily, at run time only (``validate`` never touches the network); offline it fails with
one line. ``source: local``: ``path`` is a ``.jsonl`` file, or a folder holding the same
``data_files`` name, else ``<split>.jsonl``; loaded with ``load_dataset("json", ...)``.

``fields`` maps the suite's example fields to the dataset's columns: a plain name copies
a column, a value with ``{column}`` is a ``str.format`` template (``{{`` for a literal
brace). Causal examples need ``response`` (``prompt`` defaults to ""; math may add
``answer``); encoder examples need ``text`` and ``label`` (an int column, or strings
listed in ``labels``). Track sizes (``train``, ``validation``, ``test``) cap how many
rows are taken, from the start of each split (each evaluation set separately).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..util import did_you_mean

DATA_SOURCES = ("hf", "local")
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class DataSource:
    source: str
    path: str
    name: str = ""                 # hub config name (gsm8k: "main")
    split: str = "train"
    data_files: str = ""           # a file inside the hub repo / local folder
    revision: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrackData:
    train: DataSource
    validation: DataSource | None = None
    test: tuple[tuple[str, DataSource], ...] = ()   # one entry named "test", or several named sets

    @property
    def multi_test(self) -> bool:
        return len(self.test) > 1 or (len(self.test) == 1 and self.test[0][0] != "test")


def expand_env(value: str, where: str) -> str:
    """``${VAR}`` replaced from the environment; an unset variable is a config error."""
    def sub(match: re.Match) -> str:
        var = match.group(1)
        if var not in os.environ:
            raise ConfigError(f"{where}: environment variable {var} is not set")
        return os.environ[var]
    return _ENV_VAR.sub(sub, value)


# --------------------------------------------------------------------------- parsing
def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def parse_source(data: Any, where: str) -> DataSource:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with source, path, ...")
    data = _apply_from(data, where)
    allowed = set(DataSource.__dataclass_fields__)
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown field{did_you_mean(str(key), allowed)}")
    for key in ("source", "path"):
        if key not in data:
            raise ConfigError(f"{where}.{key}: required field is missing")
    source = _str(data["source"], f"{where}.source")
    if source not in DATA_SOURCES:
        raise ConfigError(f"{where}.source: {source!r} is not one of {', '.join(DATA_SOURCES)}"
                          f"{did_you_mean(source, DATA_SOURCES)}")
    values = {k: _str(data[k], f"{where}.{k}") for k in ("path", "name", "split", "data_files", "revision")
              if k in data}
    values["path"] = expand_env(values["path"], f"{where}.path")
    fields = data.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where}.fields: expected a mapping of example field -> column or template")
    labels = data.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"{where}.labels: expected a list of label names")
    return DataSource(source=source, **values,
                      fields=tuple(sorted((_str(k, f"{where}.fields"), _str(v, f"{where}.fields.{k}"))
                                          for k, v in fields.items())),
                      labels=tuple(labels))


def _apply_from(data: Mapping, where: str) -> dict:
    """``from: "hf:<id>"`` / ``from: "local:<path>"``: shorthand for ``source`` + ``path`` (as for models)."""
    data = dict(data)
    if "from" not in data:
        return data
    if "source" in data or "path" in data:
        raise ConfigError(f"{where}.from: give either 'from' or 'source'/'path', not both")
    value = _str(data.pop("from"), f"{where}.from")
    source, sep, path = value.partition(":")
    if not sep or not path:
        raise ConfigError(f"{where}.from: expected '<source>:<location>' (e.g. 'hf:openai/gsm8k'), got {value!r}")
    return {**data, "source": source, "path": path}


def parse_track_data(data: Any, where: str) -> TrackData:
    """Validate a track's ``data`` mapping (no I/O)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with train and test sources")
    for key in data:
        if key not in ("train", "validation", "test"):
            raise ConfigError(f"{where}.{key}: unknown field{did_you_mean(str(key), ('train', 'validation', 'test'))}")
    for key in ("train", "test"):
        if key not in data:
            raise ConfigError(f"{where}.{key}: required field is missing")
    test = data["test"]
    if isinstance(test, Mapping) and "source" not in test and "from" not in test:
        if not test:
            raise ConfigError(f"{where}.test: expected a source or a non-empty mapping of named sources")
        sets = tuple((_set_name(n, f"{where}.test"), parse_source(v, f"{where}.test.{n}")) for n, v in test.items())
    else:
        sets = (("test", parse_source(test, f"{where}.test")),)
    validation = data.get("validation")
    return TrackData(train=parse_source(data["train"], f"{where}.train"),
                     validation=parse_source(validation, f"{where}.validation") if validation else None,
                     test=sets)


def _set_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ConfigError(f"{where}: {name!r} is not a valid evaluation-set name")
    return name


# --------------------------------------------------------------------------- loading
def _load_rows(src: DataSource, where: str, limit: int):
    """The first `limit` rows of a source as a `datasets.Dataset`."""
    import datasets

    if src.source == "local":
        path = Path(src.path)
        file = path if path.suffix in (".jsonl", ".json") else path / (src.data_files or f"{src.split}.jsonl")
        if not file.is_file():
            raise ConfigError(f"{where}.path: data file {str(file)!r} does not exist")
        rows = datasets.load_dataset("json", data_files=str(file), split="train")
    else:
        try:
            rows = datasets.load_dataset(src.path, src.name or None, split=src.split,
                                         data_files=src.data_files or None, revision=src.revision or None)
        except Exception as exc:  # offline, unknown id, missing config: one line, not a traceback
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConfigError(f"{where}: cannot load hub dataset {src.path!r} ({type(exc).__name__}: {first}); "
                              "without network, download it first or use `from: \"local:<folder>\"` with jsonl files") from None
    return rows.select(range(min(limit, len(rows))))


class _Row(dict):
    where = ""

    def __missing__(self, key):
        raise ConfigError(f"{self.where}: column {key!r} is not in the data (columns: {', '.join(sorted(self))})")


def _field(row: _Row, spec: str):
    if "{" in spec:
        return spec.format_map(row)
    return row[spec]


def to_examples(rows, src: DataSource, encoder: bool, id_prefix: str, where: str) -> list[dict]:
    """Map dataset rows to the suite's example dicts (see the module docstring)."""
    fields = dict(src.fields)
    required = ("text", "label") if encoder else ("response",)
    for key in required:
        if key not in fields:
            raise ConfigError(f"{where}.fields.{key}: required for this track's task")
    out = []
    for i, raw in enumerate(rows):
        row = _Row(raw)
        row.where = f"{where}.fields"
        ex = {"id": f"{id_prefix}-{i}"}
        for key, spec in fields.items():
            ex[key] = _field(row, spec)
        if encoder:
            ex["text"] = str(ex["text"])
            ex["label"] = _label(ex["label"], src.labels, f"{where}.labels")
        else:
            ex["prompt"] = str(ex.get("prompt", ""))
            ex["response"] = str(ex["response"])
        out.append(ex)
    return out


def _label(value, names: tuple[str, ...], where: str) -> int:
    if names:
        if str(value) not in names:
            raise ConfigError(f"{where}: label {value!r} is not among {list(names)}")
        return names.index(str(value))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: label {value!r} is not an integer; list the label names in `labels`")
    return value


def load_track_data(data: TrackData, track: str, encoder: bool, sizes: Mapping[str, int],
                    where: str) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """``({train, validation, test}, {set name: examples})``; ``test`` concatenates the sets."""
    splits = {"train": to_examples(_load_rows(data.train, f"{where}.train", sizes["train"]), data.train, encoder,
                                   f"{track}-train", f"{where}.train")}
    if data.validation is not None and sizes["validation"]:
        splits["validation"] = to_examples(_load_rows(data.validation, f"{where}.validation", sizes["validation"]),
                                           data.validation, encoder, f"{track}-validation", f"{where}.validation")
    else:
        splits["validation"] = []
    sets = {}
    for name, src in data.test:
        w = f"{where}.test" + ("" if name == "test" and len(data.test) == 1 else f".{name}")
        sets[name] = to_examples(_load_rows(src, w, sizes["test"]), src, encoder, f"{track}-{name}", w)
    splits["test"] = [e for examples in sets.values() for e in examples]
    return splits, (sets if data.multi_test else {})
