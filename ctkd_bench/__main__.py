"""``python -m ctkd_bench`` = the ``ctkd-bench`` command."""
from .cli import main

main()
