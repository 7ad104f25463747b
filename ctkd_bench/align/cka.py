"""Linear CKA in the form of EMO's code (`CKALoss`, haian1910/LLM2Vec_Distillation @ 9676fdb).

``sim = ||Xc^T Yc||_F / sqrt((||Xc^T Xc||_F + eps) (||Yc^T Yc||_F + eps))`` with Xc, Yc
the column-centred inputs (means over the n rows). Without eps this is the square
root of linear CKA (Kornblith et al. 2019, whose numerator is squared); EMO's loss
is ``1 - sim``. X and Y may have different widths. EMO casts to float64 (its
Classification and SentencePair copies) or keeps bf16 (STS): `dtype` picks.

Degenerate cases (as in EMO): n <= 1 gives centred zeros and sim = 0; n = 2 gives
rank-one matrices and sim ~= 1.
"""
from __future__ import annotations

import torch


def linear_cka(X: torch.Tensor, Y: torch.Tensor, eps: float = 1e-8,
               dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """EMO-form linear CKA similarity between X [n, p] and Y [n, q] (scalar, differentiable)."""
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"CKA needs the same number of rows, got {X.shape[0]} and {Y.shape[0]}")
    X = X.reshape(X.shape[0], -1)
    Y = Y.reshape(Y.shape[0], -1)
    if dtype is not None:
        X, Y = X.to(dtype), Y.to(dtype)
    X = X - X.mean(0, keepdim=True)
    Y = Y - Y.mean(0, keepdim=True)
    num = torch.linalg.matrix_norm(X.T @ Y)
    den_x = torch.linalg.matrix_norm(X.T @ X) + eps
    den_y = torch.linalg.matrix_norm(Y.T @ Y) + eps
    return num / torch.sqrt(den_x * den_y)
