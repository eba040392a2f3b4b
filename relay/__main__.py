"""``python -m relay`` is ``erp-relay``."""

from relay.cli import main

main()
