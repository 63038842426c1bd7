"""Solver-neutral formulations: each problem becomes one :class:`~optprune.milp.MILP`."""

__all__: list[str] = []
