"""A Spark standalone cluster on this machine: one master and one worker.

Both run from the Spark that the ``pyspark`` package ships (its
``bin/spark-class``), so the cluster is the very version the driver speaks.
They listen on 127.0.0.1 only, on ports the system picks (read back from
their logs, so two clusters never race for a port), and keep their logs,
work and scratch files in one folder.

Stopping is thorough, since a leftover JVM would hold memory and cores
long after a test: each daemon runs in its own process group, which also
holds the executors the worker starts, and :meth:`StandaloneCluster.stop`
ends the whole group and waits until it is empty. Where ``setpriv`` is
found the daemons are also told to end when the process that started them
dies, so not even a killed test run leaves them behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import pyspark

#: How long a daemon may take to come up: a JVM start on a busy machine.
START_TIMEOUT_S = 120.0
#: How long the daemons get to exit after SIGTERM before they are killed.
STOP_GRACE_S = 15.0

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

MASTER_URL = re.compile(r"Starting Spark master at (spark://127\.0\.0\.1:\d+)")
MASTER_LEADER = "I have been elected leader"
WORKER_REGISTERED = "Successfully registered with master"


class ClusterError(RuntimeError):
    """A daemon did not come up; the message ends with the tail of its log."""


def spark_home() -> Path:
    """The Spark that the installed pyspark package carries (bin/, jars/)."""
    return Path(pyspark.__file__).resolve().parent


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of someone else's reused the group id
        return False
    return True


def ends_with_parent() -> list[str]:
    """A command prefix that ends the command (with SIGTERM) when the process
    that started it dies, even by kill -9; empty where ``setpriv`` is missing.

    The setting survives exec, so it holds for spark-class's JVM and for a
    Python process alike."""
    return ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


class _Daemon:
    """One JVM started through spark-class, in its own process group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        # spark-class execs the JVM, so the JVM is what ends with this process.
        cmd = [*ends_with_parent(), str(spark_home() / "bin" / "spark-class"), *args]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.process.pid  # a new session's leader: its pid is the group's id

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: "re.Pattern[str] | str", timeout: float = START_TIMEOUT_S) -> str:
        """Waits until the log shows ``pattern``; returns the match (its first group, if any)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if isinstance(pattern, str):
                if pattern in text:
                    return pattern
            else:
                m = pattern.search(text)
                if m:
                    return m.group(1) if m.groups() else m.group(0)
            if self.process.poll() is not None:
                raise ClusterError(f"the {self.name} exited with {self.process.returncode}:\n{text[-4000:]}")
            if time.monotonic() > deadline:
                raise ClusterError(f"the {self.name} did not come up within {timeout:.0f} s:\n{text[-4000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Ends the daemon and everything it started (the worker's executors)."""
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
            if not _group_alive(self.pgid):
                break
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while _group_alive(self.pgid) and time.monotonic() < deadline:
                self.process.poll()  # reaps the leader, so that it does not linger as a zombie
                time.sleep(0.1)
        self.process.poll()

    def alive(self) -> bool:
        self.process.poll()
        return _group_alive(self.pgid)


class StandaloneCluster:
    """A master and one worker on 127.0.0.1; use as a context manager.

    ``cores`` and ``memory`` bound what the worker offers executors, whatever
    the machine has.
    """

    def __init__(self, folder: Path, cores: int = 2, memory: str = "2g", daemon_memory: str = "512m") -> None:
        self.folder = folder
        self.cores, self.memory = cores, memory
        self.env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(folder / "scratch"),
            # An empty configuration folder: no spark-env.sh or
            # spark-defaults.conf of this machine's changes the cluster.
            "SPARK_CONF_DIR": str(folder / "conf"),
            "SPARK_DAEMON_MEMORY": daemon_memory,
        }
        self.master: Optional[_Daemon] = None
        self.worker: Optional[_Daemon] = None
        self.url = ""

    def start(self) -> "StandaloneCluster":
        for sub in ("scratch", "conf", "work"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        # The master's REST submission server would take a fixed port (6066);
        # applications here connect through the RPC port alone.
        (self.folder / "conf" / "spark-defaults.conf").write_text("spark.master.rest.enabled false\n")
        try:
            self.master = _Daemon(
                "master",
                [MASTER_CLASS, "--host", "127.0.0.1", "--port", "0", "--webui-port", "0"],
                self.env, self.folder / "master.log",
            )
            self.url = self.master.wait_for(MASTER_URL)
            self.master.wait_for(MASTER_LEADER)
            self.worker = _Daemon(
                "worker",
                [
                    WORKER_CLASS, "--host", "127.0.0.1", "--port", "0", "--webui-port", "0",
                    "--cores", str(self.cores), "--memory", self.memory,
                    "--work-dir", str(self.folder / "work"), self.url,
                ],
                self.env, self.folder / "worker.log",
            )
            self.worker.wait_for(WORKER_REGISTERED)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops the worker (and its executors), then the master; safe to call twice."""
        for daemon in (self.worker, self.master):
            if daemon is not None:
                daemon.stop()

    def leftovers(self) -> list[str]:
        """Names of the daemons with a process still alive in their group (none after stop)."""
        return [d.name for d in (self.master, self.worker) if d is not None and d.alive()]

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
