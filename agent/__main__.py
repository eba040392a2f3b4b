"""``python -m agent`` is ``erp-agent``."""

from agent.cli import main

main()
