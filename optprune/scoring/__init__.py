"""optprune.scoring (see the package modules)."""
