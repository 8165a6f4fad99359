"""The ``hpc`` command groups, one module each; :mod:`hpc.cli` registers them.

:mod:`~hpc.commands.jobs` (``hpc job``; its ``submit`` in
:mod:`~hpc.commands.submit`), :mod:`~hpc.commands.tasks`
(``hpc task``), :mod:`~hpc.commands.nodes` (``hpc node``),
:mod:`~hpc.commands.agents` (``hpc agent``) and :mod:`~hpc.commands.up`
(``hpc up``). Shared helpers live in :mod:`hpc.common`.
"""
