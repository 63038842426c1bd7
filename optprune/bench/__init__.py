"""optprune.bench (see the package modules)."""
