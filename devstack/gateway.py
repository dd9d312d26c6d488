"""The real open-source Portkey gateway (``@portkey-ai/gateway``, pinned in ``tools/gateway``) on this
machine, for end-to-end runs: handler → gateway → Portkey stand-in as a custom host.

``npm ci --prefix tools/gateway`` installs it, and its ``postinstall`` (``patch-package``) applies
``tools/gateway/patches/`` (see ``tools/gateway/README.md``); a bundle without the patch's marker is
refused here, since unpatched 1.15.2 answers 500 on every proxied call under Node 20.

The gateway's ``build/start-server.js`` takes its port as ``--port=N`` (default 8787) and hands no
host to ``@hono/node-server``, which would then listen on every interface and print ``localhost:0``
for port 0. A small ``--import`` preload therefore binds it to 127.0.0.1 and reports the port the
kernel chose, so ``--port=0`` works without a race.

    with PortkeyGateway() as gateway:
        os.environ["PORTKEY_BASE_URL"] = gateway.url  # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

__all__ = [
    "INSTALL_COMMAND",
    "PATCH_MARKER",
    "GatewayStartError",
    "GatewayUnavailable",
    "PortkeyGateway",
    "pinned_version",
]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "tools" / "gateway"
PACKAGE_NAME = "@portkey-ai/gateway"
INSTALL_COMMAND = "npm ci --prefix tools/gateway"
# The last line tools/gateway/patches/@portkey-ai+gateway+1.15.2.patch adds to the bundle.
PATCH_MARKER = "// portkey-thread-updater: gateway PR #1390 applied (tools/gateway/patches/, patch-package)"
HOST = "127.0.0.1"
GREETING = "AI Gateway says hey!"  # what the gateway answers on GET /
_LISTENING = "portkey-gateway-listening"
_LISTENING_LINE = re.compile(rf"^{_LISTENING} (\S+):(\d+)$", re.MULTILINE)
_POLL_SECONDS = 0.05
_LOG_TAIL_CHARS = 4000

# Loaded with ``node --import`` before the gateway: a listen() given a port but no host gets
# 127.0.0.1, and the address actually bound is printed for PortkeyGateway to read.
_PRELOAD = f"""
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {{
  if (typeof args[0] === "number" && typeof args[1] !== "string") {{
    args.splice(1, args[1] === undefined ? 1 : 0, "{HOST}");
  }}
  this.once("listening", () => {{
    const bound = this.address();
    process.stderr.write(`\\n{_LISTENING} ${{bound.address}}:${{bound.port}}\\n`);
  }});
  return listen.apply(this, args);
}};
"""


class GatewayUnavailable(RuntimeError):
    """node, or the pinned gateway package, is not installed here."""


class GatewayStartError(RuntimeError):
    """The gateway was installed but did not come up (its output is in the message)."""


def pinned_version(package_dir: Path = PACKAGE_DIR) -> str:
    """The gateway version ``tools/gateway/package.json`` pins."""
    manifest = json.loads((package_dir / "package.json").read_text())
    return str(manifest["dependencies"][PACKAGE_NAME])


class PortkeyGateway:
    """Starts the pinned gateway with node on a free loopback port; stops it on exit, also on errors.

    Its stdout and stderr go to ``log_path`` (kept) or to a temporary file (removed on stop); see
    :meth:`output`. ``start()`` waits at most ``start_timeout_s`` for ``GET /`` to answer.
    """

    def __init__(
        self,
        *,
        package_dir: Path = PACKAGE_DIR,
        node: str | None = None,
        log_path: Path | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.package_dir = package_dir
        self.node = node
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.version = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_file: Path | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> PortkeyGateway:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start node and wait until the gateway answers; raises (having stopped it) if it does not."""
        if self._process is not None:
            raise RuntimeError("the gateway is already running")
        node, entry = self._locate()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path
            self._log = self.log_path.open("wb")
        else:
            handle, name = tempfile.mkstemp(prefix="portkey-gateway-", suffix=".log")
            self._log_file = Path(name)
            self._log = os.fdopen(handle, "wb")
        command = [
            node,
            f"--import=data:text/javascript,{quote(_PRELOAD)}",
            str(entry),
            "--port=0",
            "--headless",
        ]
        try:
            self._process = subprocess.Popen(
                command,
                cwd=self.package_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate, wait, kill after ``stop_timeout_s``; close (and remove a temporary) log. Idempotent."""
        process, self._process = self._process, None
        self._port = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._log_file is not None and self.log_path is None:
            self._log_file.unlink(missing_ok=True)
            self._log_file = None

    # ------------------------------------------------------------------ what callers use

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gateway is not running")
        return self._port

    @property
    def url(self) -> str:
        """The base URL the function uses: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """Everything the gateway printed so far (stdout and stderr)."""
        if self._log_file is None or not self._log_file.exists():
            return ""
        return self._log_file.read_text("utf-8", "replace")

    # ------------------------------------------------------------------ internals

    def _locate(self) -> tuple[str, Path]:
        node = shutil.which(self.node or "node")
        if node is None:
            raise GatewayUnavailable(
                f"{self.node or 'node'} is not installed (the Portkey gateway runs on Node.js). Install "
                f"Node.js and npm (e.g. `apt-get install -y nodejs npm`), then run `{INSTALL_COMMAND}`."
            )
        installed = self.package_dir / "node_modules" / PACKAGE_NAME
        entry = installed / "build" / "start-server.js"
        if not entry.is_file():
            raise GatewayUnavailable(
                f"the Portkey gateway package is not installed ({entry} is missing); run `{INSTALL_COMMAND}`."
            )
        self.version = str(json.loads((installed / "package.json").read_text())["version"])
        wanted = pinned_version(self.package_dir)
        if self.version != wanted:
            raise GatewayUnavailable(
                f"{PACKAGE_NAME} {self.version} is installed but tools/gateway pins {wanted}; "
                f"run `{INSTALL_COMMAND}`."
            )
        if PATCH_MARKER not in entry.read_text("utf-8", "replace"):
            raise GatewayUnavailable(
                f"{PACKAGE_NAME} {self.version} is installed without its patch (tools/gateway/patches/, "
                f"applied by the npm postinstall; skipped by --ignore-scripts); run `{INSTALL_COMMAND}`."
            )
        return node, entry

    def _wait_until_ready(self) -> None:
        """Bounded: read the bound port from the log, then poll ``GET /`` for the gateway's greeting."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise GatewayStartError(f"the Portkey gateway exited with code {code}:\n{self._tail()}")
            if self._port is None:
                found = _LISTENING_LINE.search(self.output())
                if found is not None:
                    self._port = int(found.group(2))
            if self._port is not None:
                try:
                    with urllib.request.urlopen(self.root_url, timeout=1) as answer:
                        body = answer.read().decode("utf-8", "replace")
                except (urllib.error.URLError, OSError) as error:
                    last_error = f"{type(error).__name__}: {error}"
                else:
                    if body.strip() == GREETING:
                        return
                    last_error = f"unexpected answer on GET /: {body[:200]!r}"
            time.sleep(_POLL_SECONDS)
        raise GatewayStartError(
            f"the Portkey gateway did not answer within {self.start_timeout_s:g} s ({last_error}):\n"
            f"{self._tail()}"
        )

    def _tail(self) -> str:
        text = self.output()[-_LOG_TAIL_CHARS:]
        where = f" (full log: {self._log_file})" if self.log_path is not None else ""
        return f"--- gateway output{where} ---\n{text}"
