"""``python -m devhost [--host 127.0.0.1] [--port 7071] [--app function_app]``.

Like ``func start``: the app module is imported from the current directory,
``local.settings.json`` Values become environment variables (ones already
set win), ``host.json`` beside it is honoured, and the Service Bus triggers
read the bus the settings describe.
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

log = logging.getLogger("devhost")


def load_local_settings(path: Path) -> None:
    """Export ``Values`` of local.settings.json, as Core Tools does; the environment wins."""
    if not path.is_file():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def load_app(target: str) -> func.FunctionApp:
    """``module`` or ``module:attribute`` (default attribute ``app``)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app")
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
    load_local_settings(cwd / "local.settings.json")
    app = load_app(args.app)

    from shared.settings import Settings
    from shared.wiring import build_bus

    bus = build_bus(Settings())
    host_json = cwd / "host.json"
    host = LocalHost(
        app,
        bus=bus,
        host=args.host,
        port=args.port,
        host_json=host_json if host_json.is_file() else None,
    )
    try:
        host.serve_forever()
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
