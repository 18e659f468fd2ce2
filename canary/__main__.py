"""``python -m canary`` is the ``canary`` command."""

from canary.cli import main

main()
