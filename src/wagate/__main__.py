"""``python -m wagate``: the same as the ``wagate`` command."""

from wagate.cli import main

main()
