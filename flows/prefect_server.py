"""The temporary Prefect API server of a command, tied to the command's life.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server in a subprocess the first time
a flow needs one and stops it when Python exits. A command killed with SIGKILL never gets there,
and its server (about 230 MB) kept running. Here that server is started by a small wrapper whose
stdin is a pipe from the command: the operating system closes the pipe however the command ends,
and the wrapper then stops the server. Prefect's own start-up wait (20 s) is too short for a
first run on a fresh ``PREFECT_HOME`` (database migrations) on a busy machine, so the default
here is :data:`START_TIMEOUT_S` (a Prefect profile may set a longer one); the environment
variable ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` overrides it either way, and a
server that does not come up is one :class:`PrefectServerError` line.

Run as ``python -m angioflow.flows.prefect_server PORT`` it is that wrapper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from angioflow.pipeline.errors import AngioflowError
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings

__all__ = ["START_TIMEOUT_S", "PrefectServerError", "use_watched_temporary_server"]

START_TIMEOUT_S = 180
_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# how long the wrapper lets uvicorn shut down cleanly once the command is gone
_GRACE_S = 10


class PrefectServerError(AngioflowError, RuntimeError):
    """The temporary Prefect API server did not start; the message says what to change."""


class _WatchedServer(SubprocessASGIServer):
    """Prefect's temporary server, started through the watchdog wrapper of this module."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _WatchedServer:
        # the parent class hands out one shared instance per port; this one is registered
        # explicitly by use_watched_temporary_server
        return object.__new__(cls)

    def start(self, timeout: int | None = None) -> None:
        if timeout is None:
            given = os.environ.get(_TIMEOUT_VARIABLE)
            configured = get_current_settings().server.ephemeral.startup_timeout_seconds
            # an explicit variable wins; otherwise a profile may only lengthen the wait
            timeout = int(given) if given and given.isdigit() else max(configured, START_TIMEOUT_S)
        try:
            super().start(timeout=timeout)
        except RuntimeError as error:
            reason = str(error).split(".")[0]
            raise PrefectServerError(
                f"the temporary Prefect API server did not start within {timeout} s ({reason}); "
                f"set {_TIMEOUT_VARIABLE} higher on a busy machine, or PREFECT_API_URL to a "
                "running server"
            ) from error

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        environment = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        return subprocess.Popen(
            [sys.executable, "-m", "angioflow.flows.prefect_server", str(self.port)],
            stdin=subprocess.PIPE,
            env=environment,
        )


def use_watched_temporary_server() -> None:
    """Make the temporary Prefect server that flows of this process may start die with it.

    Nothing changes when ``PREFECT_API_URL`` names a server, or a temporary server is already
    running (a test harness's). The server itself starts only when a flow first needs it.
    """
    if PREFECT_API_URL.value():
        return
    current = SubprocessASGIServer._instances.get(None)
    if current is not None and current.running:
        return
    SubprocessASGIServer._instances[None] = _WatchedServer()


def _stop_when_stdin_closes() -> None:
    """Block until the command that started this server closes its end of stdin (it exited or
    was killed), then stop uvicorn, and exit outright if it has not stopped in time."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_GRACE_S)
    os._exit(1)


def _serve(port: int) -> None:
    import uvicorn

    threading.Thread(target=_stop_when_stdin_closes, daemon=True).start()
    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
