"""``hpc``: the HybridHPC command-line client (Typer + Rich, httpx for HTTP).

Modules: :mod:`hpc.client` speaks the control-plane HTTP API,
:mod:`hpc.spec` turns command-line options into a job spec,
:mod:`hpc.render` draws tables, :mod:`hpc.watch` follows a job,
:mod:`hpc.up` runs a local cluster, :mod:`hpc.commands` holds one module per
command group (helpers they share in :mod:`hpc.common`) and :mod:`hpc.cli`
wires them into the ``hpc`` command.
"""
