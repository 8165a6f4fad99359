"""Index a function app with Azure's own Python worker code, as Azure does at start-up.

Runs in the worker venv (``bash scripts/worker_venv.sh`` prints its python)::

    .venv-worker/bin/python scripts/worker_index.py [path/to/function_app.py]

It calls what the worker calls when the host asks for the app's functions
(azure_functions_runtime: ``loader.index_function_app``, then
``functions.Registry().add_indexed_function`` for each function) and prints one
JSON document: per function, the worker's refusal (``error``, null when
accepted) and the raw bindings the host reads. In Azure, one refused function
fails the whole app's indexing, HTTP routes included; here each function is
tried so that every refusal is reported at once.

Exit 0 when every function is accepted, 1 when one is refused, 2 when the app
itself cannot be indexed (import error, no or several FunctionApp objects).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any


class BindingInfo:
    """The constants of the worker's protobuf ``BindingInfo`` that indexing reads
    (FunctionRpc.proto: ``Direction {in, out, inout}``, ``DataType {undefined, string,
    binary, stream}``); the only part of ``protos`` the Registry needs."""

    out = 1
    inout = 2
    undefined = 0
    string = 1
    binary = 2
    stream = 3

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


setattr(BindingInfo, "in", 0)  # noqa: B010 ("in" is a keyword)
PROTOS = types.SimpleNamespace(BindingInfo=BindingInfo)


def index(app_path: Path) -> tuple[int, dict[str, Any]]:
    sys.path.insert(0, str(app_path.parent))
    from azure_functions_runtime import loader
    from azure_functions_runtime.bindings import meta
    from azure_functions_runtime.functions import Registry

    meta.load_binding_registry()  # the worker does this when it starts
    try:
        indexed = loader.index_function_app(str(app_path))
    except Exception as e:  # what the worker reports for the whole app
        return 2, {"app_error": f"{type(e).__name__}: {e}", "functions": {}}
    registry = Registry()
    functions: dict[str, Any] = {}
    for function in indexed:
        name = function.get_function_name()
        try:
            registry.add_indexed_function(function=function, protos=PROTOS)
            error = None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        functions[name] = {
            "error": error,
            "bindings": [json.loads(b) for b in function.get_raw_bindings()],
        }
    refused = any(f["error"] for f in functions.values())
    return (1 if refused else 0), {"app_error": None, "functions": functions}


def main(argv: list[str]) -> int:
    app_path = Path(argv[0] if argv else "function_app.py").resolve()
    code, doc = index(app_path)
    from importlib.metadata import version

    doc["versions"] = {
        "python": sys.version.split()[0],
        "azure-functions-runtime": version("azure-functions-runtime"),
        "azure-functions": version("azure-functions"),
    }
    print(json.dumps(doc, indent=2, sort_keys=True))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
