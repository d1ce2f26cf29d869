"""Where the TALQ 2.7.1 specification files are: `../shared/reference/talq/` next to the
checkout (/work/shared/reference/talq for /work/main; the CI puts them beside its checkout
the same way). Used by the conformance tests and the docs, not by the gateway at run time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[2]
FILES = {
    "gateway": "talq-api-gateway-2-7-1-online.json",
    "cms": "talq-api-cms-2-7-1-online.json",
    "model": "talq-data-model-2-7-1-online.json",
}


class ReferenceMissing(FileNotFoundError):
    """The specification files are not where they should be; the message says where we looked."""


def reference_dir(checkout: Path = CHECKOUT) -> Path:
    d = checkout.parent / "shared" / "reference" / "talq"
    missing = [f for f in FILES.values() if not (d / f).is_file()]
    if missing:
        raise ReferenceMissing(
            f"the TALQ 2.7.1 OpenAPI files are not in {d} (missing: {', '.join(missing)}); put the TALQ "
            "consortium's release 2.7.1 files (TALQ_specification repository) there, beside the checkout"
        )
    return d


def load(which: str, checkout: Path = CHECKOUT) -> Any:
    """One of FILES ('gateway', 'cms', 'model') as JSON."""
    return json.loads((reference_dir(checkout) / FILES[which]).read_text(encoding="utf-8"))
