"""The page the console answers with while it has no user (there is no default password)."""

from __future__ import annotations

import html
from pathlib import Path


def setup_page(name: str, data_dir: Path, problem: str | None) -> str:
    where = html.escape(str(data_dir))
    why = (
        f"<p>The users file is unusable: <code>{html.escape(problem)}</code></p>"
        if problem
        else "<p>This console has no user yet, and there is no default password.</p>"
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<link rel=stylesheet href="/console.css"><title>{html.escape(name)}: console</title>'
        f"<main class=setup><h1>Cabinet console</h1>{why}<p>On the cabinet, create a technician:</p>"
        f"<pre>cabinet console passwd --data-dir {where} --role technician NAME</pre>"
        "<p>(or install the users file that <code>cabinet provision --console-user NAME</code> wrote), "
        "then reload this page. See docs/console.md.</p></main></html>"
    )
