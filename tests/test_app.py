"""The first app page, through Streamlit's AppTest (the real script, no browser)."""

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_app_starts_offline_with_the_shipped_model():
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "capsviz" in app.title[0].value
    assert "MNIST test accuracy" in app.caption[0].value
    assert any("Upload a picture" in info.value for info in app.info)
