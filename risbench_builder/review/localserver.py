"""A throwaway Label Studio on 127.0.0.1 for tests and benchmarks (never for a team).

It runs from its own virtual environment (``.venv-labelstudio``, label-studio 1.23), on a
free port, with a temporary data dir, a preset admin and legacy token, outbound calls off and
local-files serving rooted at ``document_root``. A cold first start migrates an empty SQLite
database (20-90 s on 2 cores); the migrated data dir is then kept as a template next to the
venv, so later starts copy it and are up in a few seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "risbench-test-admin"
TEST_TOKEN = "0123456789abcdef0123456789abcdef01234567"   # only ever used on a loopback test server
LABEL_STUDIO_SPEC = "label-studio==1.23.*"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalLabelStudio:
    """``start()``, ``stop()``, ``kill()`` (SIGKILL, as a crash) and ``url``; restarts reuse the
    data dir and port."""

    def __init__(self, venv: Path, data_dir: Path, document_root: Path, *, token: str = TEST_TOKEN,
                 port: int | None = None, template: Path | None = None):
        self.venv = Path(venv).absolute()
        self.data_dir = Path(data_dir).absolute()
        self.document_root = Path(document_root).resolve()
        self.token = token
        self.port = port or free_port()
        self.template = template
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    def _env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update({
            "LABEL_STUDIO_USERNAME": ADMIN_EMAIL, "LABEL_STUDIO_PASSWORD": ADMIN_PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": self.token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        })
        return env

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(self.executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env=self._env(), cwd=self.data_dir, start_new_session=True)
        log.close()

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"label-studio did not answer {self.url}/health within {timeout:.0f} s; see {self.log}")

    def start(self, timeout: float = 300.0) -> "LocalLabelStudio":
        if not self.executable.exists():
            raise FileNotFoundError(f"{self.executable} not found: python3 -m venv {self.venv} && "
                                    f"{self.venv}/bin/pip install '{LABEL_STUDIO_SPEC}'")
        fresh = not (self.data_dir / "label_studio.sqlite3").exists()
        if fresh and self.template is not None and (self.template / "label_studio.sqlite3").exists():
            shutil.copytree(self.template, self.data_dir, dirs_exist_ok=True)
            fresh = False
        self._spawn()
        self._wait(timeout)
        if fresh and self.template is not None:      # keep the migrated database for next time
            self.stop()
            tmp = self.template.with_name(self.template.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(self.data_dir, tmp, ignore=shutil.ignore_patterns("*.log", "export", "media"))
            if not self.template.exists():
                tmp.rename(self.template)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            self._spawn()
            self._wait(timeout)
        return self

    def _signal(self, sig: int, wait: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM by PID (runserver has no children), SIGKILL after 20 s."""
        self._signal(signal.SIGTERM, 20)

    def kill(self) -> None:
        """SIGKILL by PID: the server dies as in a crash."""
        self._signal(signal.SIGKILL, 20)

    def __enter__(self) -> "LocalLabelStudio":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
