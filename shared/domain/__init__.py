"""The pure domain: states and their transition table, records, the job spec and task graph,
the wire messages, and the decision code (lifecycle, scheduler, eligibility, pending,
reconciler, autoscaler). Nothing here does I/O or reads the clock: callers pass ``now``, so
the simulator and the cluster run the same code."""
