"""Row pieces: how the methods' hot paths split [rows x vocabulary] work at the papers' vocabularies.

Whole-batch [tokens x vocabulary] temporaries (at 4 x 256 tokens and Qwen's 151k entries, 0.6 GB
each) are fresh memory the kernel faults in on every step. Above ``PIECES_FROM_BYTES`` the
methods run the same row-wise steps over pieces of about ``PIECE_BYTES``, reading rows by index;
smaller inputs (``tiny``) keep the whole-batch form, where the pieces' recomputation would cost
more than the faults it saves (tiny: +7% on DSKD's step). Read at call time, so tests can shrink them.
"""
PIECE_BYTES = 4 << 20          # bytes of the widest row-wise tensor of one piece
PIECES_FROM_BYTES = 32 << 20   # below this, the whole-batch form


def rows_per_piece(width: int, itemsize: int = 4) -> int:
    """Rows per piece for rows of ``width`` entries of ``itemsize`` bytes (at least 1)."""
    return max(1, PIECE_BYTES // (itemsize * max(1, width)))


def use_pieces(n_rows: int, width: int, itemsize: int = 4) -> bool:
    """Whether [n_rows x width] is large enough to go in pieces."""
    return itemsize * n_rows * width > PIECES_FROM_BYTES
