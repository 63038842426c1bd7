"""optprune.pruning (see the package modules)."""
