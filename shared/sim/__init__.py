"""The trace-replay simulator: the real scheduler (shared/domain/scheduler.py) on a virtual
clock, fed a Standard Workload Format trace."""
