"""Times the job over a generated log, on a standalone cluster and on local[*].

Run through ``analytics/bench.sh``, which prepares the virtualenv::

    analytics/bench.sh --events-count 1000000

The log (``bulklog.py``) is written once per size under ``--work`` and
reused by later runs of the same size. Then a master and a worker (2 cores,
2 GiB, as in the cluster test) are started, and ``python -m
portico_analytics`` runs against the cluster and then on ``local[*]``, one
after the other so that they do not share the cores. The time measured is
the job's whole wall time as a user sees it, JVM start included, and the
CPU time its processes used (for the cluster, the executors' and the
daemons' too); the load average is printed beside them, since other work on
the machine stretches the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bulklog import write_bulk_log  # noqa: E402
from standalone import StandaloneCluster  # noqa: E402

CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
CLUSTER_CONF = {"spark.cores.max": "2"}


def _log(folder: Path, count: int) -> Path:
    """The events folder for ``count`` lines, written unless a finished one is there."""
    events = folder / f"events-{count}"
    done = events / ".complete"
    if done.exists():
        print(f"bench: reusing {events}", file=sys.stderr)
        return events
    shutil.rmtree(events, ignore_errors=True)
    started = time.monotonic()
    files = write_bulk_log(events, count, progress=lambda n: print(f"bench: {n} lines written", file=sys.stderr))
    size = sum(f.stat().st_size for f in files)
    print(
        f"bench: wrote {count} lines, {len(files)} files, {size / 2**20:.0f} MiB "
        f"in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    done.write_text("")
    return events


class CpuMeter:
    """CPU seconds used by some processes and all their descendants, sampled from /proc.

    Other work on a shared machine stretches the wall time but hardly the
    CPU time, so the two together say what the job costs. Sampling misses
    at most the last interval of a process that ends between two samples.
    """

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, roots: list[int], interval: float = 0.5) -> None:
        self.roots, self.interval = set(roots), interval
        self.start = self._sample()  # what the roots had used before (a daemon's start)
        self.seen: dict[int, float] = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        stats: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            # After the command: state, ppid, ..., utime (12th), stime (13th).
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.TICK)
        ours: dict[int, float] = {}
        for pid, (ppid, cpu) in stats.items():
            p, hops = pid, 0
            while p not in self.roots and p in stats and hops < 64:
                p, hops = stats[p][0], hops + 1
            if p in self.roots:
                ours[pid] = cpu
        return ours

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid, cpu in self._sample().items():
                self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.seen.items())


def _run(
    events: Path, out: Path, master: str, conf: dict[str, str], also_measure: Optional[list[int]] = None
) -> dict[str, object]:
    cmd = [sys.executable, "-m", "portico_analytics", "--events", str(events), "--out", str(out), "--master", master]
    for key, value in {**CONF, **conf}.items():
        cmd += ["--conf", f"{key}={value}"]
    load = os.getloadavg()[0]
    started = time.monotonic()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    meter = CpuMeter([process.pid, *(also_measure or [])])
    stdout, stderr = process.communicate()
    seconds = time.monotonic() - started
    cpu = meter.stop()
    if process.returncode != 0:
        raise SystemExit(f"bench: the job on {master} failed:\n{stderr[-4000:]}")
    return {
        "master": master,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1),
        "result": stdout.strip(),
    }


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Time the job on a standalone cluster and on local[*].")
    p.add_argument("--events-count", type=int, required=True, help="lines in the generated log")
    p.add_argument("--work", type=Path, default=Path("/tmp/portico-analytics-bench"), help="folder for logs and reports (default: %(default)s)")
    p.add_argument("--only", choices=("cluster", "local"), help="time only one of the two")
    p.add_argument(
        "--memory",
        default="2g",
        help="the worker's and executor's memory, and the driver's on local[*] (default: %(default)s)",
    )
    args = p.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    events = _log(args.work, args.events_count)
    results = []
    if args.only != "local":
        shutil.rmtree(args.work / "cluster", ignore_errors=True)
        with StandaloneCluster(args.work / "cluster", cores=2, memory=args.memory) as cluster:
            # The executors are the worker's children: their CPU counts too.
            daemons = [d.process.pid for d in (cluster.master, cluster.worker) if d is not None]
            conf = {**CLUSTER_CONF, "spark.executor.memory": args.memory}
            results.append(_run(events, args.work / "out-cluster", cluster.url, conf, daemons))
        if cluster.leftovers():
            print(f"bench: left running: {cluster.leftovers()}", file=sys.stderr)
    if args.only != "cluster":
        results.append(_run(events, args.work / "out-local", "local[*]", {"spark.driver.memory": args.memory}))
    for r in results:
        print(json.dumps({"events": args.events_count, "cores": os.cpu_count(), "memory": args.memory, **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
