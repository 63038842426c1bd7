"""``python -m optprune`` runs the command line."""

from optprune.cli import main

main()
