"""Shared test fixtures.

* ``faces``: the real photo fixtures in ``../shared/fixtures/faces`` (override
  with ``$SOULID_FIXTURES``); tests that need them skip with a reason when absent.
* Every test runs with its own data, config, cache and library folders, so no
  test reads or writes the user's real files or credentials.
* Under ``CI=true`` a skip for something CI must have (a ComfyUI host, the
  face fixtures, Chromium, the test or local extra's packages, the package
  index; or any test marked ``comfyui``) is turned into a failure: a missing
  host must be loud, never a silent green (:func:`ci_must_not_skip`).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# tests/ on sys.path: `from standin import server`, `import helpers`.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def fixtures_root() -> Path:
    env = os.environ.get("SOULID_FIXTURES")
    return Path(env) if env else REPO.parent / "shared" / "fixtures" / "faces"


@pytest.fixture(scope="session")
def faces() -> Path:
    root = fixtures_root()
    if not (root / "obama").is_dir():
        pytest.skip(f"real face fixtures not found at {root} (set SOULID_FIXTURES)")
    return root


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    for var, sub in (
        ("SOULID_DATA_DIR", "data"),
        ("SOULID_CONFIG_DIR", "config"),
        ("SOULID_CACHE_DIR", "cache"),
        ("SOULID_LIBRARY", "library"),
    ):
        monkeypatch.setenv(var, str(tmp_path / "_user" / sub))
    for var in ("HF_KEY", "HF_API_KEY", "HF_API_SECRET", "WAVESPEED_API_KEY", "AURASHOT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield


# ------------------------------------------------------------ CI: no silent skips
#: Skip reasons that mean "CI lacks something it must have" (the host, the fixtures, Chromium,
#: the newest frontend, a package of the test or local extra, the package index).
_CI_NEEDS = re.compile(r"COMFYUI_PATH|not a ComfyUI checkout|comfy_api is not importable|ComfyUI (at .*)?(does not import|did not answer|"
                       r"exited)|face fixtures|chromium|playwright|frontend is not set up|package index|"
                       r"not installed|could not import|no module named", re.IGNORECASE)
#: Skips that stay skips in CI: what no test machine has (model weights).
_CI_ALLOWED = re.compile(r"model files this machine does not have", re.IGNORECASE)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def ci_must_not_skip(reason: str, markers: set[str]) -> bool:
    """True when a skip with ``reason`` (of a test with ``markers``) must fail under ``CI=true``."""
    reason = reason or ""
    if _CI_ALLOWED.search(reason):
        return False
    return "comfyui" in markers or bool(_CI_NEEDS.search(reason))


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip(report, markers: set[str]) -> None:
    reason = _skip_reason(report.longrepr)
    if ci_must_not_skip(reason, markers):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this skip hides a missing requirement, failing instead: {reason}"


def host_versions() -> list[str]:
    """The ComfyUI host's version and both frontends' (host's own, newest): for the log's header."""
    out = []
    root = os.environ.get("COMFYUI_PATH")
    ver = None
    if root and (Path(root) / "comfyui_version.py").is_file():
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (Path(root) / "comfyui_version.py").read_text())
        ver = m.group(1) if m else "?"
    out.append(f"ComfyUI host: {ver or 'none'} ({root or 'COMFYUI_PATH not set'})")
    try:
        from importlib.metadata import version

        out.append(f"host's frontend: comfyui-frontend-package {version('comfyui-frontend-package')}")
    except Exception:
        out.append("host's frontend: comfyui-frontend-package not installed")
    new = os.environ.get("SOULID_NEW_FRONTEND_ROOT")
    out.append(f"newest frontend: {frontend_version(Path(new)) if new else 'none'} ({new or 'SOULID_NEW_FRONTEND_ROOT not set'})")
    return out


def frontend_version(static: Path) -> str:
    """Version of the comfyui-frontend-package whose ``static`` folder this is (from its dist-info)."""
    for d in static.parent.parent.glob("comfyui_frontend_package-*.dist-info"):
        return d.name.removesuffix(".dist-info").split("-")[1]
    return "?"


def browser_script(script: Path, out: Path, newest_frontend: bool) -> list[str]:
    """The command line of a browser script (``tests/browser_pass.py``,
    ``tests/browser_ux.py``) on the host's frontend or, with ``newest_frontend``,
    on ``$SOULID_NEW_FRONTEND_ROOT``; skips (a failure under CI) what is missing:
    ``$COMFYUI_PATH``, Chromium, playwright, the newest frontend."""
    import sys

    chromium = os.environ.get("SOULID_CHROMIUM", "/usr/bin/chromium")
    if not os.environ.get("COMFYUI_PATH"):
        pytest.skip("COMFYUI_PATH is not set (a ComfyUI checkout)")
    if not Path(chromium).exists():
        pytest.skip(f"chromium not found at {chromium} (Debian package chromium)")
    pytest.importorskip("playwright", reason="playwright is not installed (the test extra)")
    cmd = [sys.executable, str(script), "--out", str(out), "--chromium", chromium]
    if newest_frontend:
        root = os.environ.get("SOULID_NEW_FRONTEND_ROOT")
        if not root or not (Path(root) / "index.html").is_file():
            pytest.skip("the newest frontend is not set up: SOULID_NEW_FRONTEND_ROOT (see .ci/comfyui_host.sh)")
        cmd += ["--front-end-root", root]
    return cmd


def pytest_report_header(config):
    return host_versions()


def pytest_configure(config):
    if _in_ci():  # a module failed for a missing host: still run (and report) every other test
        config.option.continue_on_collection_errors = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail_skip(report, {m.name for m in item.iter_markers()})


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped:  # a module-level pytest.skip / importorskip
        _fail_skip(report, set())
