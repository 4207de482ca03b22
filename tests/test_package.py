"""capsviz as a real package: build the wheel, install it into a fresh virtual environment, run it.

No network: the wheel is built without build isolation (setuptools from this environment) and
installed without dependencies; the fresh environment sees this one's packages (torch, ...)
through a .pth file, so only capsviz itself comes from the wheel.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from capsviz.bench.browser import free_port, serving

from conftest import OFFLINE_ENV, REPO
from drawings import draw_digit

SOURCES = ("capsviz", "pretrained", "pyproject.toml", "README.md", "requirements.txt")


def run(*command, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=OFFLINE_ENV)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the capsviz wheel installed; returns its bin folder."""
    pytest.importorskip("setuptools", minversion="70.1", reason="requirements-dev.txt installs setuptools>=70.1")
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "capsviz" else {}),
        )
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", tmp / "dist",
        source, cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("capsviz-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = bin_dir / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip()
    ours = {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
    (Path(purelib) / "_this_environment.pth").write_text("\n".join(sorted(ours)) + "\n")  # after the venv's own
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation", wheel, cwd=tmp)
    return bin_dir


def test_the_installed_package_is_the_wheel_with_its_weights(installed, tmp_path):
    code = "import capsviz.checkpoint as c, capsviz.ui.server as s; print(c.__file__, c.SHIPPED_CHECKPOINT, s.PAGE)"
    module, weights, page = run(installed / "python", "-c", code, cwd=tmp_path).stdout.split()
    venv = installed.parent
    assert all(Path(p).is_relative_to(venv) for p in (module, weights, page)), (module, weights, page)
    assert Path(weights).is_file() and Path(weights).with_suffix(".json").is_file() and Path(page).is_file()


def test_capsviz_help_and_predict_run_from_the_console_script(installed, tmp_path):
    help_text = run(installed / "capsviz", "--help", cwd=tmp_path).stdout
    for command in ("train", "evaluate", "predict", "export", "app"):
        assert command in help_text
    drawing = tmp_path / "seven.png"
    draw_digit(7).save(drawing)
    (entry,) = json.loads(run(installed / "capsviz", "predict", drawing, "--json", cwd=tmp_path).stdout)
    assert entry["label"] == 7 and len(entry["lengths"]) == 10


def test_capsviz_app_serves_the_page_from_the_installed_package(installed, tmp_path):
    port, log = free_port(), tmp_path / "app.log"
    command = [installed / "capsviz", "app", "--server.port", port, "--server.headless", "true"]
    with serving(command, port, env=OFFLINE_ENV, cwd=tmp_path, host="localhost", log=log):
        pass
    assert f"localhost:{port}" in log.read_text()  # bound to this machine only, as .streamlit/config.toml says


def test_streamlit_is_imported_only_by_the_app_and_the_two_bench_sections_that_drive_it():
    """The library trains and measures where streamlit is not installed (a GPU machine)."""
    import re

    package = REPO / "capsviz"
    drivers = {package / "bench" / "app.py", package / "bench" / "lesson.py"}  # Streamlit's AppTest, timed
    importing = re.compile(r"^\s*(import streamlit|from streamlit[ .])", re.MULTILINE)
    outside = [
        str(path.relative_to(REPO))
        for path in package.rglob("*.py")
        if importing.search(path.read_text(encoding="utf-8")) and package / "ui" not in path.parents
        and path not in drivers
    ]  # fmt: skip
    assert outside == []
