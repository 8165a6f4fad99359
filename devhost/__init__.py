"""A local Azure Functions host: runs function_app.py's functions without Core Tools.

``python -m devhost`` serves the project's app; :class:`LocalHost` does the
same from code (tests, ``hpc up``).
"""

from devhost.host import LocalHost
from devhost.indexing import AppIndexingError

__all__ = ["AppIndexingError", "LocalHost"]
