"""The control plane's use cases, one module each: submit, queries, cancel (and requeue),
dispatch (the scheduler pass), events, registration, reconcile. Each loads records through
the ports, asks a pure rule in :mod:`shared.domain` what to do, and saves the result.
:class:`shared.usecases.control_plane.ControlPlane` gathers them for the function app."""
