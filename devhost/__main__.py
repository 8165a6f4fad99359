"""``python -m devhost [--host 127.0.0.1] [--port 7071] [--app function_app]``.

Like ``func start``: the app module is imported from the current directory,
``local.settings.json`` Values become environment variables (ones already
set win), ``host.json`` beside it is honoured, and the Service Bus triggers
read the bus the settings describe (HPC_BUS). Unlike ``func start``, a setting
set neither in the environment nor in local.settings.json takes its value from
``local.settings.json.example`` (the working local values), so a fresh clone
runs, timer schedules (``%HPC_RECONCILE_SCHEDULE%``...) included. In Azure these
are app settings; the app never sets them itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

import azure.functions as func

from devhost.host import LocalHost
from devhost.indexing import AppIndexingError, find_app

log = logging.getLogger("devhost")


EXAMPLE_SUFFIX = ".example"


def load_local_settings(path: Path) -> list[str]:
    """Export ``Values`` of local.settings.json, as Core Tools does, then those of
    ``local.settings.json.example`` still unset; the environment wins. Returns the names
    taken from the example."""
    _export(path)
    return _export(path.with_name(path.name + EXAMPLE_SUFFIX))


def _export(path: Path) -> list[str]:
    if not path.is_file():
        return []
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    exported = [name for name in values if name not in os.environ]
    for name in exported:
        os.environ[name] = str(values[name])
    return exported


def load_app(target: str) -> func.FunctionApp:
    """``module`` or ``module:attribute``. Without an attribute the app is the module's one
    top-level FunctionApp, as Azure's worker finds it (several are refused there too)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        app = getattr(module, attribute) if attribute else find_app(module)
    except AppIndexingError as e:
        raise SystemExit(f"{target}: {e}") from None
    if not isinstance(app, func.FunctionApp):
        raise SystemExit(f"{target}: {attribute or 'app'} is not an azure.functions.FunctionApp")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0 picks a free one)")
    parser.add_argument("--app", default="function_app", help="module[:attribute] of the app")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    cwd = Path.cwd()
    if str(cwd) not in sys.path:
        sys.path.insert(0, str(cwd))
    defaults = load_local_settings(cwd / "local.settings.json")
    if defaults:
        log.info("settings from local.settings.json.example: %s", ", ".join(sorted(defaults)))
    app = load_app(args.app)

    from shared.settings import Settings
    from shared.wiring import build_bus

    bus = build_bus(Settings())
    host_json = cwd / "host.json"
    try:
        host = LocalHost(
            app,
            bus=bus,
            host=args.host,
            port=args.port,
            host_json=host_json if host_json.is_file() else None,
        )
    except AppIndexingError as e:
        bus.close()
        raise SystemExit(str(e)) from None
    try:
        host.serve_forever()
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
