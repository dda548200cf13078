"""``python -m nucscale``."""

from nucscale.cli import main

main()
