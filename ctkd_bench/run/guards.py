"""What a cell must leave as it found it (the teacher, its frozen head copies, the cached signals),
and which errors are the machine's rather than the cell's.

Every cell of a track shares one teacher and one signal cache, so a method that
writes into them (``ctx.teacher_embeddings.mul_(0)``, training a projector built
on ``nn.Parameter(ctx.teacher_lm_head)`` without copying it, ...) would change
every later cell. In-place writes bump a tensor's version counter (views share
it); a checksum of the teacher's weights and head also catches replaced data.
"""
from __future__ import annotations

import errno

import torch

# OSErrors that say the machine, not the method, is at fault: the run stops (a rerun resumes)
# instead of recording a failed cell that a rerun would then skip.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def reraise_environment_error(exc: BaseException) -> None:
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        raise exc


def _named_tensors(env) -> list[tuple[str, torch.Tensor]]:
    named = [(f"teacher.{n}", t) for n, t in env.teacher.named_parameters()]
    head = env.cache.head
    named += [(f"teacher head.{n}", t) for n in ("lm_head", "lm_bias", "embeddings")
              if isinstance(t := getattr(head, n, None), torch.Tensor)]
    for (ekey, rkey), ragged in getattr(env.cache, "_loaded", {}).items():
        named.append((f"teacher signals.{rkey}", ragged.data))
    return named


@torch.no_grad()
def _checksum(tensors: list[torch.Tensor]) -> list[tuple[str, float, float]]:
    """Per tensor: its device (a sum is only compared on the same device) and two sums."""
    return [(str(t.device), float(t.double().sum()), float(t.double().pow(2).sum())) for t in tensors]


class TeacherGuard:
    """Snapshot before a cell; `changed()` after it names the first teacher tensor that differs."""

    def __init__(self, env):
        self.named = _named_tensors(env)
        self.versions = [t._version for _, t in self.named]
        self.summed = [i for i, (n, _) in enumerate(self.named) if not n.startswith("teacher signals.")]
        self.sums = _checksum([self.named[i][1] for i in self.summed])

    def changed(self) -> str | None:
        for (name, tensor), version in zip(self.named, self.versions):
            if tensor._version != version:
                return name
        sums = _checksum([self.named[i][1] for i in self.summed])
        for i, before, after in zip(self.summed, self.sums, sums):
            if before[0] == after[0] and repr(before) != repr(after):   # repr: nan equals nan
                return self.named[i][0]
        return None
