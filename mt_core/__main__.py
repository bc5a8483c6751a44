"""``python -m mt_core`` is the ``mt`` command."""

from .cli import main

main()
