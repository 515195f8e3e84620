"""`python -m lowrank_audit` is the `lowrank-audit` command."""

from .cli import main

main()
