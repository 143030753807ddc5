"""`--executor dask`: the grid's cells as Prefect tasks on a Dask cluster, through prefect-dask's DaskTaskRunner.

Without an address, a local cluster is started with one single-threaded worker process per slot that the local
executor would have used (one per CPU core, or ``--per-gpu`` per GPU, each pinned with CUDA_VISIBLE_DEVICES and
advertising one ``GPU`` resource). With ``--dask-address`` the cells go to that scheduler's workers. Either way,
when any worker advertises a ``GPU`` resource, every cell asks for one, so a GPU worker trains one cell at a time.

The Dask workers run Prefect task runs themselves, so they must reach this flow's Prefect API: its URL is
passed to them with the tasks, and a temporary server (127.0.0.1) is refused for workers on other machines.

A Dask scheduler runs whatever code it is sent, unauthenticated over ``tcp://``. So the local cluster (its
scheduler, nannies, workers and their health routes) listens on 127.0.0.1 only; a ``tls://`` address is
reached with the certificates of Dask's configuration (``distributed.comm.tls.*``, which ``--dask-tls-*``
set); and a run that sends its cells to a ``tcp://`` address beyond this machine says once that anyone who
can reach that scheduler can run code on its workers (docs/scaling-out.md).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

from tasks.errors import AblationError
from tasks.training.devices import SlotSpec

GPU = "GPU"  # the resource name workers advertise: `dask worker ... --resources GPU=1`
LOOPBACK = "127.0.0.1"  # where the local cluster listens: nothing beyond this machine may send it code
# Dask's own configuration keys for a client's TLS (what `--dask-tls-*` set; also read from Dask's YAML files and
# DASK_DISTRIBUTED__COMM__TLS__* environment variables)
TLS_CONFIG = {"ca_file": "distributed.comm.tls.ca-file", "cert": "distributed.comm.tls.client.cert",
              "key": "distributed.comm.tls.client.key"}
CONNECT_TIMEOUT_S = 10  # to a scheduler given by address; Dask's default of 30 s is long for a typo


class DaskClusterError(AblationError):
    """The Dask scheduler cannot be reached or has no workers that can run the cells (exit code 2)."""


@dataclass
class DaskExecutor:
    runner: object  # a started prefect_dask.DaskTaskRunner
    workers: int  # the workers that take cells: those with a GPU, if any has one
    annotations: dict = field(default_factory=dict)  # for dask.annotate: {"resources": {"GPU": 1}} on GPUs

    def describe(self, address: str | None) -> str:
        where = f"the Dask cluster at {address}" if address else "a local Dask cluster"
        gpu = " with a GPU (one per cell)" if self.annotations else ""
        return f"{where}: {self.workers} worker(s){gpu}"


@contextmanager
def dask_executor(address: str | None, slots: list[SlotSpec], retries: int) -> Iterator[DaskExecutor]:
    """A started DaskTaskRunner on ``address`` or on a local cluster built from ``slots``; torn down after."""
    from distributed import Client  # noqa: F401  (fails here, not in a worker, if distributed is missing)
    from prefect import get_run_logger
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    api_url = prefect_api_url()
    with ExitStack() as stack:
        if address:
            check_reachable(address)
            check_tls(address)
            if warning := plain_tcp_warning(address):  # once per run, on the terminal and in the UI
                get_run_logger().warning(warning)
            runner = DaskTaskRunner(address=address, client_kwargs={"timeout": CONNECT_TIMEOUT_S})
        else:
            cluster = stack.enter_context(local_cluster(slots, retries, api_url))
            runner = DaskTaskRunner(cluster=cluster)
        # Task runs serialise the settings they start with: workers report to this flow's API, not their own.
        stack.enter_context(temporary_settings({PREFECT_API_URL: api_url}))
        try:
            stack.enter_context(runner)
            workers = runner.client.scheduler_info(n_workers=-1)["workers"]
        except (OSError, TypeError, ValueError) as exc:  # comm errors are OSErrors; a TLS mismatch a TypeError
            if not address:
                raise
            raise DaskClusterError(f"--dask-address {address}: could not talk to the Dask scheduler "
                                   f"({_first_line(exc)}); one started with TLS needs a tls:// address and "
                                   "certificates its CA signed (docs/scaling-out.md)") from None
        if not workers:
            raise DaskClusterError(f"the Dask scheduler at {address} has no workers; start some with "
                                   f"`dask worker {address}`")
        check_api_reachable(api_url, [info.get("host", "") for info in workers.values()])
        gpu_workers = sum(bool(info.get("resources", {}).get(GPU)) for info in workers.values())
        if gpu_workers:  # cells go to GPU workers only
            yield DaskExecutor(runner, gpu_workers, {"resources": {GPU: 1}})
        else:
            yield DaskExecutor(runner, len(workers))


@contextmanager
def local_cluster(slots: list[SlotSpec], retries: int, api_url: str):
    """One nanny-managed, single-threaded worker process per slot, with the slot's environment."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        f"slot-{slot.index}": {"cls": Nanny, "options": {
            "nthreads": 1,
            "env": slot.env() | {"PREFECT_API_URL": api_url},
            "silence_logs": logging.WARNING,
            "resources": {GPU: 1} if slot.device.startswith("gpu:") else None,
            "dashboard": False,
            "host": LOOPBACK,  # the nanny and its worker, their health routes included
        }} for slot in slots}
    # allowed_failures: how often a cell may take its worker down with it (out of memory, killed) before Dask
    # gives up on it with KilledWorker; that is --retries.
    # The scheduler serves its health routes on a free port of the loopback interface (8787 may be taken; Dask's
    # ":0" would mean every interface); no dashboard.
    scheduler = {"cls": Scheduler, "options": {"host": LOOPBACK, "dashboard": False,
                                               "dashboard_address": f"{LOOPBACK}:0", "allowed_failures": retries}}
    with SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING) as cluster:
        yield cluster


def prefect_api_url() -> str:
    """The URL of the Prefect API this process talks to: a configured server or the temporary one."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


def check_reachable(address: str) -> None:
    """A one-line error now for a scheduler address that is malformed or where nothing listens."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        raise DaskClusterError(f"--dask-address {address!r}: expected tcp://HOST:PORT (a Dask scheduler)")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise DaskClusterError(f"--dask-address {address}: no Dask scheduler reachable there "
                               f"({exc.strerror or exc})") from None


def use_tls_files(address: str | None, ca_file: str | None, cert: str | None, key: str | None) -> None:
    """``--dask-tls-*``: set Dask's TLS configuration for this process (the client that sends the cells), after a
    one-line error for a file that cannot be read or a ``tcp://`` address that would not use them."""
    given = {name: path for name, path in {"ca_file": ca_file, "cert": cert, "key": key}.items() if path}
    if not given:
        return
    if not (address or "").startswith("tls://"):
        raise DaskClusterError("--dask-tls-ca-file, --dask-tls-cert and --dask-tls-key are for a "
                               "--dask-address tls://HOST:PORT")
    for name, path in given.items():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise DaskClusterError(f"--dask-tls-{name.replace('_', '-')} {path}: {exc.strerror or exc}") from None
    import dask

    dask.config.set({TLS_CONFIG[name]: str(path) for name, path in given.items()})


def check_tls(address: str) -> None:
    """A ``tls://`` scheduler needs a CA to trust and a client certificate: a one-line error naming what Dask's
    configuration lacks (Dask itself would fail with a TypeError about an SSL context)."""
    if not address.startswith("tls://"):
        return
    import dask

    missing = [flag for flag, key in (("--dask-tls-ca-file", TLS_CONFIG["ca_file"]),
                                      ("--dask-tls-cert", TLS_CONFIG["cert"])) if not dask.config.get(key, None)]
    if missing:
        raise DaskClusterError(f"--dask-address {address}: TLS needs a CA file and a client certificate; pass "
                               f"{' and '.join(missing)} (or set {', '.join(TLS_CONFIG.values())} in Dask's "
                               "configuration)")


def plain_tcp_warning(address: str) -> str | None:
    """The warning for cells sent unencrypted and unauthenticated beyond this machine: a ``tcp://`` scheduler on a
    host that is not (or does not resolve only to) a loopback address. None for loopback and ``tls://``."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme != "tcp" or all(_is_loopback(host) for host in _resolved(parsed.hostname or "")):
        return None
    return (f"--dask-address {address} is unencrypted and unauthenticated: anyone who can reach that scheduler "
            "can run code on its workers, and the cells' data crosses the network in the clear; use tls:// "
            "(docs/scaling-out.md)")


def check_api_reachable(api_url: str, worker_hosts: list[str]) -> None:
    """Workers on other machines cannot report to a Prefect API on this machine's loopback interface."""
    host = urlparse(api_url).hostname or ""
    if not _is_loopback(host):
        return
    here = _local_addresses()
    remote = sorted({h for h in worker_hosts if h and not _is_loopback(h) and h not in here})
    if remote:
        raise DaskClusterError(
            f"Dask workers on {', '.join(remote)} cannot reach this run's Prefect API at {api_url}; start a "
            "Prefect server they can reach (`prefect server start --host 0.0.0.0`) and set PREFECT_API_URL")


def killed_message(exc) -> str:
    """Why Dask gave up on a cell (a ``KilledWorker``: its worker died on every attempt), in one line."""
    tries = exc.allowed_failures + 1
    last = getattr(exc.last_worker, "address", exc.last_worker)
    attempts = f" on each of {tries} attempts" if tries > 1 else ""
    return (f"its Dask worker died before the cell finished{attempts} (out of memory, killed or crashed); "
            f"last on {last}, whose log says more")


def mark_crashed(task_run_id, message: str) -> None:
    """Close the task run the dead worker left "Running" in Prefect, so the UI shows what happened."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_state(task_run_id, Crashed(message=message), force=True)
    except Exception as exc:  # the record already says it; the UI's state is a courtesy
        logging.getLogger(__name__).warning("could not mark task run %s crashed: %s", task_run_id, exc)


def _resolved(host: str) -> set[str]:
    """The addresses a host name resolves to (itself when it does not resolve: judged as written)."""
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)} or {host}
    except (OSError, UnicodeError):
        return {host}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_addresses() -> set[str]:
    import psutil  # installed with distributed

    return {a.address for nics in psutil.net_if_addrs().values() for a in nics} | {socket.gethostname()}
