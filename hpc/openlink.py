"""Opening a link that carries a secret in a web browser, without putting it on a command line.

``webbrowser.open(url)`` starts the browser with the URL as an argument, which every local
user reads in ``ps`` or /proc/<pid>/cmdline: on a shared login node ``hpc dashboard --open``
showed the user's API token to all of them. As Jupyter does, the browser gets instead the
``file://`` URL of a page only its owner may read (0600, in a 0700 folder under HPC_HOME)
that moves on to the link (``location.replace``: no history entry is left behind). The page
goes once the browser had time to load it: a detached helper removes it after
``REMOVE_AFTER_S``, and each later call removes pages older than that, should the helper not
have run.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import subprocess
import sys
import tempfile
import time
import webbrowser
from pathlib import Path

FOLDER = "browser"
"""Under HPC_HOME: the redirect pages (0700)."""
REMOVE_AFTER_S = 120.0
"""How long a redirect page stays: a browser started cold on a loaded login node loads it
well within this."""

_REMOVER = "import os, sys, time\ntime.sleep(float(sys.argv[2]))\nos.remove(sys.argv[1])\n"


def redirect_page(url: str) -> str:
    """A page that replaces itself with ``url`` (and links to it, for a browser without JS)."""
    target = json.dumps(url).replace("<", "\\u003c")  # never ends the script element
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"><title>HybridHPC</title>\n'
        f"<script>location.replace({target});</script></head>\n"
        f'<body><p><a href="{html.escape(url, quote=True)}">Open the HybridHPC dashboard</a></p>'
        "</body></html>\n"
    )


def open_privately(url: str, home: Path) -> bool:
    """Open ``url`` in a browser through a private redirect page under ``home``; whether a
    browser took it (False too when ``webbrowser`` fails). The page is removed at once when
    no browser took it, else after ``REMOVE_AFTER_S``."""
    folder = home / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # made before, or with another umask
    _remove_stale(folder, now=time.time())
    fd, name = tempfile.mkstemp(prefix="dashboard-", suffix=".html", dir=folder)  # 0600
    page = Path(name)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(redirect_page(url))
    try:
        opened = webbrowser.open(page.as_uri())
    except webbrowser.Error:
        opened = False
    if opened:
        _remove_later(page)
    else:
        page.unlink(missing_ok=True)
    return opened


def _remove_later(page: Path) -> None:
    """A detached process that outlives this command removes the page (its path is no secret)."""
    with contextlib.suppress(OSError):
        subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", _REMOVER, str(page), str(REMOVE_AFTER_S)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def _remove_stale(folder: Path, *, now: float) -> None:
    for page in folder.glob("*.html"):
        with contextlib.suppress(OSError):
            if now - page.stat().st_mtime > REMOVE_AFTER_S:
                page.unlink()
