"""The control plane's use cases, one module each: submit, queries and sweeps (monitoring),
cancel and requeue, modify, queue and dispatch (the scheduler pass), events, taskdeps,
registration, losses, reconcile, nodes, autoscale, templates. Each loads records through the
ports, asks a pure rule in :mod:`shared.domain` what to do, and saves the result.
:class:`shared.usecases.control_plane.ControlPlane` gathers them for the function app."""
