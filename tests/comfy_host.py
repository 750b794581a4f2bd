"""A real ComfyUI server with this pack loaded, for host tests.

``$COMFYUI_PATH`` names a ComfyUI checkout (the folder holding ``main.py``);
``$COMFYUI_PYTHON`` the interpreter that runs it (default: this one). The
server starts on 127.0.0.1 on a free port with ``--cpu``, a temporary
``--base-directory`` (its ``custom_nodes/`` holds a symlink to this repo, so
the checkout itself is not touched), an in-memory database and no cloud API
nodes. Its log goes to ``<base>/comfyui.log``.

Without ``$COMFYUI_PATH``, or when the host cannot start, the fixture skips and
says why (with the tail of the host's log). A host that starts but does not
list our nodes is a test failure, not a skip: see ``test_comfyui_host.py``.

ComfyUI's HTTP API (``/object_info``, ``/prompt``, ``/history/{id}``,
``/view``): https://docs.comfy.org/development/comfyui-server/comms_routes
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
#: Seconds to wait for the server to answer (a cold start on 2 CPU cores
#: imports torch and every core node: about 20-60 s).
START_TIMEOUT = float(os.environ.get("COMFYUI_START_TIMEOUT", "240"))
#: Environment variables not passed to the host: they would move the Soul ID
#: library out of ComfyUI's user directory or leak credentials into the test.
_DROP_ENV = (
    "SOULID_DATA_DIR",
    "SOULID_LIBRARY",
    "SOULID_CACHE_DIR",
    "HF_KEY",
    "HF_API_KEY",
    "HF_API_SECRET",
    "WAVESPEED_API_KEY",
    "AURASHOT_API_KEY",
)


@dataclass
class ComfyHost:
    """A running ComfyUI server.

    Attributes:
        url: base URL, ``http://127.0.0.1:<port>``.
        base: the temporary ``--base-directory`` (``input/``, ``output/``,
            ``temp/``, ``user/``, ``custom_nodes/``).
        log: the host's combined stdout/stderr log file.
        proc: the server process.
    """

    url: str
    base: Path
    log: Path
    proc: subprocess.Popen

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def user_dir(self) -> Path:
        return self.base / "user"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)


def comfy_checkout() -> tuple[Path | None, str]:
    """``($COMFYUI_PATH, "")`` when it is a usable checkout, else ``(None, why)``."""
    env = os.environ.get("COMFYUI_PATH")
    if not env:
        return None, (
            "COMFYUI_PATH is not set: point it at a ComfyUI checkout (and COMFYUI_PYTHON at an "
            "interpreter with its requirements and soulid installed) to run the ComfyUI host tests"
        )
    root = Path(env).expanduser().resolve()
    if not (root / "main.py").is_file():
        return None, f"COMFYUI_PATH={env} has no main.py: not a ComfyUI checkout"
    return root, ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its children (it runs in its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


@contextmanager
def start_comfy(base: Path, extra_args: tuple[str, ...] = (), env: dict | None = None) -> Iterator[ComfyHost]:
    """Start ComfyUI with this pack in ``base``; yield a :class:`ComfyHost`;
    stop it afterwards. ``env`` adds variables (e.g. the cloud stand-in's URLs
    and keys) after the user's own were dropped.

    Calls ``pytest.skip`` when ``$COMFYUI_PATH`` is unset or the server exits
    or stays silent before answering ``/system_stats``.
    """
    root, why = comfy_checkout()
    if root is None:
        pytest.skip(why)
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "soulid"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    port = _free_port()
    cmd = [
        python,
        str(root / "main.py"),
        "--cpu",
        "--listen", "127.0.0.1",
        "--port", str(port),
        "--base-directory", str(base),
        "--database-url", "sqlite:///:memory:",
        "--disable-auto-launch",
        "--disable-api-nodes",
        *extra_args,
    ]  # fmt: skip
    host_env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    # Keep the user's real config (credentials) out of reach of the host.
    host_env["SOULID_CONFIG_DIR"] = str(base / "soulid_config")
    host_env["PYTHONUNBUFFERED"] = "1"
    host_env.update(env or {})
    log = base / "comfyui.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            cmd, cwd=root, env=host_env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    host = ComfyHost(url=f"http://127.0.0.1:{port}", base=base, log=log, proc=proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with host.client(timeout=5.0) as c:
            while True:
                if proc.poll() is not None:
                    pytest.skip(
                        f"ComfyUI at {root} exited with code {proc.returncode} before answering "
                        f"(python: {python}); log tail:\n{host.log_tail()}"
                    )
                try:
                    if c.get("/system_stats").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.skip(f"ComfyUI at {root} did not answer within {START_TIMEOUT:.0f} s; log tail:\n{host.log_tail()}")
                time.sleep(0.5)
        yield host
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def comfy_host(tmp_path_factory) -> Iterator[ComfyHost]:
    """One ComfyUI server per test module (start-up takes tens of seconds)."""
    base = tmp_path_factory.mktemp("comfy_base")
    with start_comfy(base) as host:
        yield host


# ------------------------------------------------------- in-process nodes
def import_comfy_or_skip() -> None:
    """Import ComfyUI's modules in this process (``--cpu``), from the
    checkout ``$COMFYUI_PATH`` names when ``comfy_api`` is not importable;
    skip the calling test module, saying why, when they do not import."""
    root = os.environ.get("COMFYUI_PATH")
    if root and root not in sys.path:
        sys.path.append(root)
    try:
        from comfy.cli_args import args

        args.cpu = True  # before comfy.model_management picks a device
        import comfy.model_management  # noqa: F401
        import comfy_api.latest  # noqa: F401
    except ImportError as e:
        pytest.skip(f"ComfyUI does not import here (set COMFYUI_PATH to a checkout): {e}", allow_module_level=True)


def run_node(node, **inputs):
    """A node's ``execute`` as ComfyUI runs it: awaited on an event loop when
    it is async. Returns its ``io.NodeOutput``."""
    import asyncio
    import inspect

    out = node.execute(**inputs)
    return asyncio.run(out) if inspect.isawaitable(out) else out


def shown(out) -> dict:
    """What a node shows on itself (its ``ui``), as ComfyUI sends it."""
    return out.ui if isinstance(out.ui, dict) else out.ui.as_dict()
