"""How capsviz is served: the settings `.streamlit/config.toml` ships and `capsviz app` passes.

Safe by default: only this machine can connect, uploads stop at the app's own largest limit,
what a page reports in one rerun (its drawing, its sliders) stops at 4 MB, and the browser sees
no tracebacks. docs/guarantees.md ("Serving a classroom") opens it deliberately.

    capsviz app                                    # http://localhost:8501
    capsviz app --server.address 0.0.0.0           # any later streamlit flag overrides these
"""

from __future__ import annotations

import sys
from pathlib import Path

from capsviz.ui.inputs import MAX_UPLOAD_MB
from capsviz.ui.sidebar import MAX_CHECKPOINT_MB

MAX_PAGE_STATE_MB = 4  # a page's reports in one rerun: the drawing's PNG and strokes are under 1 MB (Streamlit: 25)

SETTINGS = {
    "server.address": "localhost",
    "server.maxUploadSize": max(MAX_UPLOAD_MB, MAX_CHECKPOINT_MB),
    "server.maxWidgetStateSize": MAX_PAGE_STATE_MB,
    "client.showErrorDetails": "none",
    "browser.gatherUsageStats": False,
}
PAGE = Path(__file__).with_name("page.py")  # what `streamlit run` runs from an installed package


def command(extra: list[str]) -> list[str]:
    """The `streamlit run` command line: capsviz's settings first, so `extra` flags win."""
    flags = [f"--{name}={str(value).lower() if isinstance(value, bool) else value}" for name, value in SETTINGS.items()]
    return [sys.executable, "-m", "streamlit", "run", str(PAGE), *flags, *extra]
