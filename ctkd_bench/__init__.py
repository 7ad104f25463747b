"""ctkd-bench: head-to-head benchmark of cross-tokenizer knowledge distillation methods.

Public API for plugin authors: `Method`, `Needs`, `Paper`, `MethodContext`,
`hookimpl`, and the batch types. Everything else is internal.
"""
from .batch import PairBatch, Side, StudentOutputs, TeacherSignals
from .hookspecs import hookimpl
from .method import Method, MethodContext, ModelDims, Needs, Paper

__version__ = "0.1.0"

__all__ = ["Method", "MethodContext", "ModelDims", "Needs", "Paper", "PairBatch", "Side",
           "StudentOutputs", "TeacherSignals", "hookimpl", "__version__"]
