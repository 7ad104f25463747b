"""Where the trainer's tensors live and how a step is taken: plain PyTorch, or 🤗 accelerate.

The plain backend is the loop as it always was (this process, fp32). The accelerate backend
is used when the budget asks for ``precision: bf16``, when the run was started by
``accelerate launch`` with several processes (DDP, FSDP or DeepSpeed, from the launch config),
or when ``CTKD_ACCELERATE=1``. The teacher is never trained and never prepared: its signals
come from the on-disk cache, which the main process fills before any cell runs (the runner
wraps that in ``main_process_first``), so here only the student, the method's extra modules
and the optimiser are prepared, and each batch with its cached signals is moved to this
rank's device. Every rank reads its own slice of each step's examples, so one optimiser
step still consumes ``examples_per_step`` examples in all.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext

import torch

from ..batch import TeacherSignals


def launched_processes() -> int:
    """How many processes `accelerate launch` / torchrun started for this run (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def wants_accelerate(precision: str) -> bool:
    return precision != "fp32" or launched_processes() > 1 or os.environ.get("CTKD_ACCELERATE") == "1"


class PlainBackend:
    """This process, fp32, the module's own device: exactly the trainer's historical path."""
    precision, world, rank, is_main = "fp32", 1, 0, True

    def prepare(self, student, extra, opt):
        return student, extra, opt

    def to_device(self, batch, signals):
        return batch, signals

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip(self, params, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)

    def shard(self, indices: list[int]) -> list[int]:
        return indices

    def finish(self, student, meter) -> None:
        """After training: the student back to its own fp32 forward on the CPU, where evaluation
        runs, and the per-rank example/token counts summed into the meter (nothing to do here)."""

    @contextmanager
    def main_process_first(self):
        yield

    def wait(self) -> None:
        pass


class AccelerateBackend(PlainBackend):
    def __init__(self, precision: str = "fp32"):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs
        # a method may leave some student parameters out of its loss (e.g. the LM head on a view)
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        # cpu=True without CUDA: torchrun-started CPU ranks then form a gloo group (else each trains alone)
        self.acc = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", kwargs_handlers=[ddp],
                               cpu=not torch.cuda.is_available())
        self.precision = precision
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        self.is_main = self.acc.is_main_process

    @property
    def device(self) -> torch.device:
        return self.acc.device

    def prepare(self, student, extra, opt):
        trainable_extra = extra is not None and any(p.requires_grad for p in extra.parameters())
        if trainable_extra:
            return self.acc.prepare(student, extra, opt)
        if extra is not None:  # frozen helpers (buffers, fixed maps): same device, no DDP wrapper
            extra.to(self.device)
        student, opt = self.acc.prepare(student, opt)
        return student, extra, opt

    def to_device(self, batch, signals):
        return batch.to(self.device), signals_to(signals, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        self.acc.backward(loss)

    def clip(self, params, max_norm: float) -> torch.Tensor:
        return self.acc.clip_grad_norm_(params, max_norm)

    def shard(self, indices: list[int]) -> list[int]:
        return indices[self.rank::self.world]

    def finish(self, student, meter) -> None:
        self.acc.unwrap_model(student, keep_fp32_wrapper=False)  # drops the bf16 autocast wrapper
        self.acc.free_memory()  # forget this cell's prepared objects (the Accelerator outlives cells)
        student.to("cpu")  # evaluation runs where it always has (lm-eval and the encoder scorer use the CPU)
        if self.world == 1:
            return
        names = ("examples", "bytes", "student_tokens", "teacher_tokens")
        counts = torch.tensor([getattr(meter, n) for n in names], dtype=torch.long, device=self.device)
        for name, value in zip(names, self.acc.reduce(counts, reduction="sum").tolist()):
            setattr(meter, name, int(value))

    def main_process_first(self):
        return self.acc.main_process_first() if self.world > 1 else nullcontext()

    def wait(self) -> None:
        self.acc.wait_for_everyone()


def signals_to(signals: TeacherSignals, device) -> TeacherSignals:
    """The cached teacher signals on `device` (tensors, and tensors inside dicts/lists; text stays)."""
    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        return value
    views = {name: signals_to(view, device) for name, view in signals.views.items()}
    return TeacherSignals(signals._needs, move(signals._values), views)


_CURRENT: list[AccelerateBackend] = []


def backend_for(precision: str) -> PlainBackend:
    """The backend a cell trains with. accelerate keeps one global state per process, so the
    Accelerator is made once and remade only when another precision is asked for (tests)."""
    if not wants_accelerate(precision):
        return PlainBackend()
    if _CURRENT and _CURRENT[0].precision == precision:
        return _CURRENT[0]
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state()  # keeps the process group (PartialState) of a launched run
    _CURRENT.clear()
    _CURRENT.append(AccelerateBackend(precision))
    return _CURRENT[0]
