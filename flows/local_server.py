"""A local Prefect server that outlives one command.

Without `PREFECT_API_URL`, every Prefect flow run would start a temporary server of its own and stop it at exit:
about 8 s of a 2-core machine's time on every `ablate` command. Instead the first command starts this one in the
background and later commands reuse it, so their flow runs also stay visible in one UI.

- **Where**: its home (database `prefect.db`, `server.json`, `server.log`) is `<reports>/.prefect/`, beside the
  runs whose reports it lists. `--out` chooses the reports folder, so it chooses the server too.
- **How**: `python -m flows.local_server HOME` serves Prefect's own app (`create_app`, as `prefect server start
  --background` does through uvicorn) on 127.0.0.1 only, on a free port, in a session of its own (a Ctrl-C at the
  terminal does not reach it), its output in `server.log`.
- **Leases**: each command holds `leases/<pid>` while it runs. The server stops itself when no live command holds
  a lease and nothing has called its API for `ABLATE_SERVER_IDLE_MINUTES` (default 60; 0 never stops).
- **Stale servers**: a `server.json` whose process is gone, is not this server, runs another Prefect version, or
  listens but does not answer its health check within `HEALTH_WAIT` seconds (hung) is replaced, never waited on.
  One whose port is still closed moments after another command started it is booting, and is waited for.
- One command at a time decides (an exclusive lock on `server.lock`), so two commands started together share one
  server, and the server's idle stop cannot slip between a command's check and its lease.

`--ephemeral` (or `ABLATE_EPHEMERAL=1`) keeps Prefect's temporary per-command server, for places that forbid
background processes. Nothing here imports Prefect on the client side: the health check is one HTTP request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from tasks.errors import AblationError

HOST = "127.0.0.1"  # loopback only: the server runs whatever flow code a client sends; no one else may reach it
IDLE_MINUTES = 60.0
START_TIMEOUT = 90.0  # a first start on a loaded 2-core machine: migrations and the UI's files take a while
HEALTH_WAIT = 10.0  # a running server that does not answer in this long is hung, and replaced
WATCH_EVERY = 5.0


class ServerError(AblationError):
    """The local server could not be started (the log says why)."""


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    prefect: str  # the Prefect version that serves it: an upgrade replaces the server
    started: float
    idle_minutes: float

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def stops(self) -> str:
        return f"stops after {self.idle_minutes:g} min unused" if self.idle_minutes else "never stops by itself"


def server_home(reports: Path) -> Path:
    return Path(reports) / ".prefect"


def idle_minutes() -> float:
    text = os.environ.get("ABLATE_SERVER_IDLE_MINUTES", "").strip()
    try:
        value = float(text) if text else IDLE_MINUTES
    except ValueError:
        raise ServerError(f"ABLATE_SERVER_IDLE_MINUTES must be a number of minutes, got {text!r}") from None
    if value < 0:
        raise ServerError(f"ABLATE_SERVER_IDLE_MINUTES must be 0 (never stop) or more, got {text!r}")
    return value


# ---- the client's side: find, start, lease, stop ---------------------------------------------------------------

class Connection:
    """A command's use of the local server: started (or found) at once, waited for when Prefect is needed, its
    lease released at exit."""

    def __init__(self, home: Path):
        self.home = home
        self.started_here = False
        with _locked(home):
            info = _running(home)
            if info is None:
                info, self.started_here = _start(home), True
            _lease(home).touch()
        self.info = info

    def wait(self) -> str:
        """The API URL, once the server answers (at once when it was already running)."""
        if self.started_here:
            _wait_healthy(self.home, self.info)
        return self.info.url

    def release(self) -> None:
        _lease(self.home).unlink(missing_ok=True)


def status(home: Path) -> ServerInfo | None:
    """The running server of this home, or None (a stale record is not a server)."""
    with _locked(home):
        return _running(home, replace=False)


def stop(home: Path, timeout: float = 15.0) -> ServerInfo | None:
    """Stop this home's server, if one runs; returns what was stopped."""
    with _locked(home):
        info = _read(home)
        if info is None:
            return None
        alive = _is_ours(info)
        if alive:
            _terminate(info.pid, timeout)
        (home / "server.json").unlink(missing_ok=True)
        return info if alive else None


@contextlib.contextmanager
def _locked(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(home: Path) -> ServerInfo | None:
    try:
        return ServerInfo(**json.loads((home / "server.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _running(home: Path, replace: bool = True) -> ServerInfo | None:
    """The recorded server if it is alive, ours, of this Prefect version and healthy. Otherwise (``replace``) a
    live but unusable one is stopped and the record removed, so a new one can start."""
    info = _read(home)
    if info is None:
        return None
    usable = _is_ours(info) and info.prefect == version("prefect")
    if usable:
        # Uvicorn listens only once the app has started, so a closed port is a server still booting (another
        # command started it moments ago: it gets the rest of its start-up time); an open port that does not
        # answer is a hung server.
        health = _health(info.url, HEALTH_WAIT)
        booting_until = time.monotonic() + max(0.0, info.started + START_TIMEOUT - time.time())
        usable = health == "ok" or (health == "closed" and _answers(info, booting_until))
    if usable or not replace:
        return info if usable else None
    if _is_ours(info):
        _terminate(info.pid, 3)  # hung, or another version: a short grace, then SIGKILL
    (home / "server.json").unlink(missing_ok=True)
    return None


def _is_ours(info: ServerInfo) -> bool:
    """The recorded process still runs and is this module's server (not another process given the same pid)."""
    import psutil

    try:
        command = psutil.Process(info.pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return "flows.local_server" in command


def _health(api_url: str, timeout: float) -> str:
    """"ok"; "closed" (nothing listens on the port); or "silent" (it listens but does not answer in time)."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return "ok" if response.status == 200 else "silent"
    except urllib.error.URLError as exc:
        return "closed" if isinstance(exc.reason, ConnectionRefusedError) else "silent"
    except ConnectionRefusedError:
        return "closed"
    except (OSError, ValueError):
        return "silent"


def _start(home: Path) -> ServerInfo:
    port = _free_port()
    with open(home / "server.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.local_server", str(home), str(port), str(idle_minutes())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd=Path(__file__).resolve().parents[1], env=_server_env(home))
    info = ServerInfo(process.pid, port, version("prefect"), time.time(), idle_minutes())
    (home / "server.json").write_text(json.dumps(asdict(info)))
    return info


def _server_env(home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API_URL")}
    return env | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                              os.environ.get("PYTHONPATH")]))}


def _answers(info: ServerInfo, deadline: float) -> bool:
    """Whether the server answers its health check before ``deadline`` (time.monotonic), while its process lives."""
    import psutil

    while True:
        if _health(info.url, 2) == "ok":
            return True
        try:
            ended = psutil.Process(info.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            ended = True
        if ended or time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _wait_healthy(home: Path, info: ServerInfo) -> None:
    if _answers(info, time.monotonic() + START_TIMEOUT):
        return
    with _locked(home):
        if _is_ours(info):
            _terminate(info.pid, 5)
        (home / "server.json").unlink(missing_ok=True)
    raise ServerError(f"the local Prefect server did not start (its log: {home / 'server.log'}); --ephemeral "
                      "uses a temporary server instead, or set PREFECT_API_URL to a running one")


def _terminate(pid: int, timeout: float) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.Error:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _lease(home: Path) -> Path:
    (home / "leases").mkdir(parents=True, exist_ok=True)
    return home / "leases" / str(os.getpid())


# ---- the server's side -----------------------------------------------------------------------------------------

class _Activity:
    """Prefect's ASGI app, noting when it was last called (the UI open in a browser counts as use)."""

    def __init__(self, app):
        self.app = app
        self.last = time.monotonic()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            self.last = time.monotonic()
        await self.app(scope, receive, send)


def _idle_since(home: Path, activity: _Activity) -> float | None:
    """Seconds since the API was last called, or None while a live command holds a lease. A command that died
    without releasing its lease (killed) leaves it behind; such leases are removed here."""
    import psutil

    for lease in (home / "leases").glob("*"):
        if lease.name.isdigit() and psutil.pid_exists(int(lease.name)):
            return None
        lease.unlink(missing_ok=True)
    return time.monotonic() - activity.last


def _watch(home: Path, server, activity: _Activity, limit_minutes: float) -> None:
    while not server.should_exit:
        time.sleep(WATCH_EVERY)
        with _locked(home):  # a command checking the server waits, so it never gets one that is stopping
            idle = _idle_since(home, activity)
            if limit_minutes and idle is not None and idle > limit_minutes * 60:
                info = _read(home)
                if info and info.pid == os.getpid():
                    (home / "server.json").unlink(missing_ok=True)
                print(f"idle for {idle / 60:.1f} min: stopping", flush=True)
                server.should_exit = True


def serve(home: Path, port: int, limit_minutes: float) -> None:
    import uvicorn
    from prefect.server.api.server import create_app

    activity = _Activity(create_app(final=True))
    server = uvicorn.Server(uvicorn.Config(activity, host=HOST, port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=_watch, args=(home, server, activity, limit_minutes), daemon=True).start()
    print(f"serving http://{HOST}:{port} (pid {os.getpid()}, idle stop after {limit_minutes:g} min)", flush=True)
    server.run()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
