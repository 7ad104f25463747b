"""Content-addressed teacher-signal cache: the teacher runs once per (teacher, data, signal).

Raw per-token tensors (see `signals.raw_keys`) are computed for a whole example
set in one pass and stored ragged (concatenated over tokens, with offsets) as
safetensors files under ``<root>/<teacher_key>/<examples_key>/<raw_key>.safetensors``.
``examples_key`` hashes the teacher's token ids, so any change of data,
tokenizer or max length gives a new entry. Every method and seed reads the
same stored tensors.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..batch import Side, TeacherSignals
from ..data.collate import Encoded, pad_side
from ..method import Needs
from ..run.faults import checkpoint
from ..util import stable_hash
from .signals import TeacherHead, derive_signals, raw_keys, teacher_raw


class Ragged:
    """Per-example tensors stored concatenated along their first (token) axis."""

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor, shapes: torch.Tensor):
        self.data, self.offsets, self.shapes = data, offsets, shapes

    def __getitem__(self, i: int) -> torch.Tensor:
        flat = self.data[int(self.offsets[i]):int(self.offsets[i + 1])]
        return flat.view(*[int(s) for s in self.shapes[i]])

    @classmethod
    def from_list(cls, items: list[torch.Tensor]) -> "Ragged":
        flat = [t.reshape(-1) for t in items]
        sizes = torch.tensor([0] + [f.numel() for f in flat])
        shapes = torch.tensor([list(t.shape) for t in items], dtype=torch.long)
        return cls(torch.cat(flat) if flat else torch.zeros(0), sizes.cumsum(0), shapes)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({"data": self.data.contiguous(), "offsets": self.offsets, "shapes": self.shapes}, tmp)
        checkpoint("teacher-cache")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Ragged":
        t = load_file(str(path))
        return cls(t["data"], t["offsets"], t["shapes"])


def _unpad(tensor: torch.Tensor, key: str, mask: torch.Tensor) -> list[torch.Tensor]:
    """Strip padding from a [B, L, ...] (or attention [B, H, L, L]) tensor; rows may be right-padded only."""
    out = []
    for b in range(tensor.shape[0]):
        n = int(mask[b].sum())
        if key.startswith("attn."):
            out.append(tensor[b, :, :n, :n].contiguous())
        elif key == "class_logits":
            out.append(tensor[b].contiguous())
        else:
            out.append(tensor[b, :n].contiguous())
    return out


class TeacherCache:
    def __init__(self, root: Path, teacher, teacher_key: str, head: TeacherHead, encoder: bool,
                 tokenizer, batch_size: int = 32):
        self.root, self.teacher, self.teacher_key = Path(root), teacher, teacher_key
        self.head, self.encoder, self.tokenizer, self.batch_size = head, encoder, tokenizer, batch_size
        self._loaded: dict[tuple[str, str], Ragged] = {}
        self.computed_tokens = 0   # teacher tokens processed by forward passes in this process

    def examples_key(self, encoded: list[Encoded]) -> str:
        return stable_hash([e.ids for e in encoded])

    def _path(self, ekey: str, rkey: str) -> Path:
        return self.root / self.teacher_key / ekey / f"{rkey}.safetensors"

    def ensure(self, encoded: list[Encoded], needs: Needs, progress=None) -> str:
        """Make sure the raw signals for `needs` exist for all `encoded` examples; return the examples key."""
        ekey = self.examples_key(encoded)
        missing = [k for k in raw_keys(needs, self.encoder)
                   if (ekey, k) not in self._loaded and not self._path(ekey, k).exists()]
        if missing:
            self._compute(encoded, ekey, missing, progress)
        for k in raw_keys(needs, self.encoder):
            if (ekey, k) not in self._loaded:
                self._loaded[(ekey, k)] = Ragged.load(self._path(ekey, k))
        return ekey

    @torch.no_grad()
    def _compute(self, encoded: list[Encoded], ekey: str, keys: list[str], progress=None) -> None:
        was_training = self.teacher.training
        self.teacher.eval()
        items: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start:start + self.batch_size]
            side = pad_side(chunk, self.tokenizer, "right")
            raw = teacher_raw(self.teacher, side, keys)
            self.computed_tokens += int(side.attention_mask.sum())
            for k in keys:
                items[k].extend(t.cpu() for t in _unpad(raw[k], k, side.attention_mask))
            if progress:
                progress(len(chunk))
        self.teacher.train(was_training)
        for k in keys:
            ragged = Ragged.from_list(items[k])
            ragged.save(self._path(ekey, k))
            self._loaded[(ekey, k)] = ragged

    def signals(self, ekey: str, indices: list[int], side: Side, needs: Needs,
                generations: list[str] | None = None) -> TeacherSignals:
        """Padded teacher signals for the batch rows `indices` (positions as in `side`)."""
        raw = {}
        mask = side.attention_mask.bool()
        B, W = mask.shape
        for k in raw_keys(needs, self.encoder):
            store = self._loaded[(ekey, k)]
            rows = [store[i] for i in indices]
            if k == "class_logits":
                raw[k] = torch.stack(rows)
                continue
            if k.startswith("attn."):
                out = rows[0].new_zeros(B, rows[0].shape[0], W, W)
            else:
                out = rows[0].new_zeros(B, W, *rows[0].shape[1:])
            for b, row in enumerate(rows):
                pos = mask[b].nonzero().squeeze(-1)
                if pos.numel() != row.shape[-2 if k.startswith("attn.") else 0]:
                    raise RuntimeError(f"teacher cache mismatch for example {indices[b]} ({k})")
                if k.startswith("attn."):
                    out[b][:, pos[:, None], pos[None, :]] = row
                else:
                    out[b, pos] = row
            raw[k] = out
        return derive_signals(raw, needs, self.head, side, generations)
