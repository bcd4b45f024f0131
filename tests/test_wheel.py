"""The built wheel, installed into a fresh environment outside the repository, is the whole tool:
one ``angioflow`` package with its configs and catalog, a git-derived version, and a CLI that runs
from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _git_commit() -> str:
    return _git("rev-parse", "--short", "HEAD").strip()


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def _checkout_copy(folder: Path) -> Path:
    """This checkout as it is now (committed, changed and new files, deletions) in a fresh
    clone: an in-tree build would package stale modules left in ./build by earlier builds."""
    _git("clone", "--quiet", "--shared", str(ROOT), str(folder))
    for name in _git("ls-files", "-z", "--deleted").split("\0"):
        if name:
            (folder / name).unlink(missing_ok=True)
    for name in _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        if name and (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from this checkout (setuptools and setuptools-scm from the dev
    environment, so no index is needed)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the version comes from git")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(_checkout_copy(tmp_path_factory.mktemp("src") / "src"))],
        check=True, capture_output=True, text=True,
    )
    (built,) = out.glob("angioflow-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding only the wheel; the dependencies come from the dev
    environment's site-packages through a plain path entry, so its editable angioflow finder is
    not loaded."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    (site / "dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         str(wheel)],
        check=True, capture_output=True, text=True,
    )
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200",
               PREFECT_HOME=str(cwd / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               ANGIOFLOW_SECRET="test-secret-0123456789abcdef")
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)


def test_the_wheel_holds_one_angioflow_package_with_configs_and_catalog(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"angioflow"}
    for needed in ("angioflow/__main__.py", "angioflow/data_catalog.yaml",
                   "angioflow/configs/downstream.yaml", "angioflow/configs/curation.yaml",
                   "angioflow/pipeline/io.py", "angioflow/annotation_tools/napari.yaml",
                   "angioflow/models/weights/vessel/config.json"):
        assert needed in names, needed
    assert not any(name.startswith(("angioflow/tests/", "angioflow/benchmarks/")) for name in names)
    modules = {
        f"angioflow/{path.relative_to(ROOT).as_posix()}"
        for folder in ("pipeline", "models", "flows", "annotation_tools")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert modules - set(names) == set(), "modules left out of the wheel (pyproject packages)"
    assert {n for n in names if n.endswith(".py")} - modules - {
        "angioflow/__init__.py", "angioflow/__main__.py"
    } == set(), "stale or foreign modules in the wheel"


def test_installed_version_comes_from_git(installed: Path, tmp_path: Path) -> None:
    shown = _run(installed, "python", "-c", "import angioflow; print(angioflow.__version__)",
                 cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    version = shown.stdout.strip()
    assert version != "0.1.0" and f"g{_git_commit()}" in version, version
    where = _run(installed, "python", "-c",
                 "import importlib.util as u; print(u.find_spec('pipeline'), u.find_spec('models'),"
                 " u.find_spec('flows'), u.find_spec('annotation_tools'))", cwd=tmp_path)
    assert where.stdout.split() == ["None"] * 4, where.stdout + where.stderr


def test_the_cli_runs_from_a_folder_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    helped = _run(installed, "angioflow", "evaluate", "downstream", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "downstream" in helped.stdout
    as_module = _run(installed, "python", "-m", "angioflow", "--help", cwd=tmp_path)
    assert as_module.returncode == 0 and "curate" in as_module.stdout, as_module.stderr


@pytest.mark.long
def test_demo_runs_from_a_folder_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    ran = _run(
        installed, "angioflow", "demo", "--n", "1", "--samples", "4", "--out", "demo", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert (tmp_path / "demo" / "report.html").is_file()
    imported_from = _run(installed, "python", "-c", "import angioflow; print(angioflow.__file__)",
                         cwd=tmp_path)
    assert str(installed) in imported_from.stdout, imported_from.stdout
