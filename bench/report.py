#!/usr/bin/env python3
"""Turns one bench/run output folder into bench/RESULTS.md (Python standard library only).

  report.py OUTDIR RESULTS_MD

Reads OUTDIR/meta.txt (header lines, already Markdown), OUTDIR/raw/*.txt (one wrk run each,
with the lines written by bench/lib/common.lua and bench/run) and, when present,
OUTDIR/growth/counts-*.txt (rows in the stores of the growth part, from bench/grow.py count),
OUTDIR/storeops.md and OUTDIR/checks.txt. Exit status 1 when a scenario failed (most of its
responses had an unexpected status), so bench/run can fail loudly.

The report opens with the PERF.md targets (portico against each Rust peer, against replay and
against Django with Redis sessions; p99; peak RSS), then every scenario's targets, then portico
against its peers per scenario and store: req/s, the ratios and server CPU per request.
"""
import glob
import os
import re
import statistics
import sys

# Display order and names of the targets.
TARGETS = {
    "hello": "bench-hello (bare axum)",
    "portico-sqlite": "portico, SQLite sessions",
    "axum-sqlite": "axum peer, SQLite sessions",
    "actix-sqlite": "actix-web peer, SQLite sessions",
    "replay": "bare axum sending portico's response (SQLite row) again, no work",
    "portico-noevents": "portico, SQLite sessions, event log off",
    "django-sqlite": "Django + SQLite sessions",
    "portico-redis": "portico, Redis sessions + PostgreSQL",
    "axum-redis": "axum peer, Redis sessions + PostgreSQL",
    "actix-redis": "actix-web peer, Redis sessions + PostgreSQL",
    "django-redis": "Django + Redis sessions",
}
STORES = {"sqlite": "SQLite", "redis": "Redis"}
RUST_PEERS = {"axum": "axum peer", "actix": "actix-web peer"}
SCENARIOS = {
    "hello": "hello: GET / of bench-hello (the reference)",
    "S1": "S1: GET /accounts/login/, returning visitor (pool of 64 sessions)",
    "S2": "S2: GET /accounts/login/, first visit (no cookie)",
    "S3": "S3: GET /captcha/ with a session cookie",
    "S4": "S4: POST /accounts/login/, valid CSRF token, wrong captcha",
    "S5": "S5: GET /notes/, logged in, 50 notes",
    "demo": "demo: GET /demo/ with a session cookie (visit counter)",
}
# Statuses that count as the scenario working (anything else is an error).
EXPECTED = {"S4": {200, 400}}
DEFAULT_EXPECTED = {200}

# PERF.md targets (restated 2026-12-03): ratios within one run, and two absolute limits.
PAGE_SCENARIOS = ("S1", "S2", "S3", "S4", "S5")
RUST_PEER_MIN = 1.5  # portico ÷ each Rust peer, every scenario and store
REPLAY_TARGETS = {"S1": 0.55, "S4": 0.55, "S5": 0.35}  # portico ÷ replay, SQLite sessions
DJANGO_TARGETS = {"S1": 40, "S2": 25, "S4": 40}  # × Django + Redis
P99_TARGETS_MS = {"S1": 3.0, "S4": 3.0, "S3": 10.0}
RSS_TARGET_MB = 30
# Cost with data: the two stores of the growth part (bench/grow.py), the scenarios measured on
# both, and what grew for each. "Within 10 %" is about cost growing: grown ÷ small ≥ 0.90.
GROWTH_TARGETS = {"store-small": "small store", "store-grown": "grown store"}
GROWTH_SCENARIOS = {"S1": "sessions", "S5": "notes_others"}
GROWTH_MIN = 0.90


def parse(path):
    run = {"statuses": {}, "path": os.path.basename(path)}
    for line in open(path, errors="replace"):
        if line.startswith("# "):
            for kv in line[2:].split():
                k, _, v = kv.partition("=")
                run[k] = v
        elif line.startswith("STATUS"):
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                run["statuses"][int(k)] = int(v)
        elif line.startswith("SUMMARY"):
            d = dict(kv.split("=") for kv in line.split()[1:])
            run["requests"] = int(d["requests"])
            run["rps"] = int(d["requests"]) / (int(d["duration_us"]) / 1e6)
            run["duration_s"] = int(d["duration_us"]) / 1e6
            run["sockerr"] = sum(int(d[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
        elif line.startswith("LAT_US"):
            d = dict(kv.split("=") for kv in line.split()[1:])
            run["p50"] = int(d["p50"]) / 1000
            run["p99"] = int(d["p99"]) / 1000
        elif line.startswith("HWM_KB"):
            run["hwm_mb"] = int(line.split()[1]) / 1024
        elif line.startswith("CPU_CORES"):
            run["cpu"] = float(line.split()[1])
        elif line.startswith("REDIS_CPU_CORES"):
            run["rcpu"] = float(line.split()[1])
        elif line.startswith("REDIS_CALLS"):
            run["rcalls"] = int(line.split()[1])
        elif line.startswith("LOADAVG"):
            run["load"] = float(line.split()[1])
    run["round"] = int(run.get("round", 0))
    return run if "rps" in run else None


def fmt_int(x):
    return f"{x:,.0f}"


def fmt_bytes(n):
    n = int(n)
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def main():
    outdir, results = sys.argv[1], sys.argv[2]
    runs = [r for r in (parse(p) for p in sorted(glob.glob(os.path.join(outdir, "raw", "*.txt")))) if r]
    hello = {}
    for r in runs:
        if r["scenario"] == "hello":
            hello.setdefault(r["round"], []).append(r["rps"])
    hello_mean = {k: statistics.mean(v) for k, v in hello.items()}
    groups = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["target"]), []).append(r)

    def rps_by_round(scenario, target):
        out = {}
        for r in groups.get((scenario, target), []):
            out.setdefault(r["round"], []).append(r["rps"])
        return {k: statistics.mean(v) for k, v in out.items()}

    def ratio(scenario, a, b_scenario, b):
        """mean over rounds of (a's req/s / b's req/s in the same round)."""
        ra, rb = rps_by_round(scenario, a), rps_by_round(b_scenario, b)
        common = sorted(set(ra) & set(rb))
        if not common:
            return None
        return statistics.mean(ra[k] / rb[k] for k in common)

    def hello_ratio(scenario, target):
        ra = rps_by_round(scenario, target)
        common = sorted(set(ra) & set(hello_mean))
        return statistics.mean(ra[k] / hello_mean[k] for k in common) if common else None

    def cpu_us(scenario, target):
        """Server CPU µs per request, mean over runs."""
        rs = [r for r in groups.get((scenario, target), []) if r["requests"] and "cpu" in r]
        return statistics.mean(r["cpu"] * r["duration_s"] / r["requests"] * 1e6 for r in rs) if rs else None

    def redis_per_request(scenario, target):
        """(redis-server CPU µs, Redis commands) per request, mean over runs; None where not counted."""
        rs = [r for r in groups.get((scenario, target), []) if r["requests"] and "rcalls" in r]
        if not rs:
            return None
        return (statistics.mean(r.get("rcpu", 0) * r["duration_s"] / r["requests"] * 1e6 for r in rs),
                statistics.mean(r["rcalls"] / r["requests"] for r in rs))

    failed = []
    summary = {}
    durations = [r["duration_s"] for r in runs]
    dur_txt = f"{statistics.median(durations):.0f} s" if durations else "wrk"
    lines = [
        "## Results",
        "",
        f"Each cell pools the rounds of this run. **req/s per round** lists every {dur_txt} run in round order;",
        "**mean** is their mean. **×hello** is the mean over rounds of (req/s ÷ the mean of the bench-hello runs",
        "of the same round, one at the start and one at the end of each round); **×Django** columns divide by",
        "the Django variant's req/s of the same round, then average over rounds. p50/p99 are the median over",
        "runs of wrk's latency percentiles. **errors** = socket errors + responses with an unexpected status",
        "(expected: 200, or 200/400 for S4). **peak RSS** is the largest VmHWM of the server during one run",
        "(the high-water mark is reset before each run; Django: master + 2 workers summed). **server CPU** is the",
        "server's user+system time ÷ wall time (Redis rows: + redis-server's). **load avg** is the 1-minute load",
        "average after each run: server + wrk make about 2; more means other work shared the machine.",
        "",
    ]
    for scenario, title in SCENARIOS.items():
        targets = [t for t in TARGETS if (scenario, t) in groups]
        if not targets:
            continue
        lines += [f"### {title}", "",
                  "| target | req/s per round | mean req/s | ×hello | ×Django SQLite | ×Django Redis "
                  "| p50 ms | p99 ms | errors | statuses | server CPU (cores) | peak RSS MB | load avg |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in targets:
            rs = sorted(groups[(scenario, t)], key=lambda r: (r["round"], r["path"]))
            want = EXPECTED.get(scenario, DEFAULT_EXPECTED)
            total = sum(r["requests"] for r in rs)
            bad = sum(v for r in rs for k, v in r["statuses"].items() if k not in want)
            errors = bad + sum(r["sockerr"] for r in rs)
            st = {}
            for r in rs:
                for k, v in r["statuses"].items():
                    st[k] = st.get(k, 0) + v
            status_txt = " ".join(f"{k}:{v}" for k, v in sorted(st.items()))
            if total and errors > total / 2:
                failed.append(f"{scenario} on {t}: {errors} of {total} responses wrong ({status_txt})")
                status_txt = "**FAILED** " + status_txt
            hr = hello_ratio(scenario, t) if scenario != "hello" else 1.0
            is_portico = t.startswith("portico")
            dj_sql = ratio(scenario, t, scenario, "django-sqlite") if is_portico else None
            dj_red = ratio(scenario, t, scenario, "django-redis") if is_portico else None
            mean_rps = statistics.mean(r["rps"] for r in rs)
            p50 = statistics.median(r["p50"] for r in rs)
            p99 = statistics.median(r["p99"] for r in rs)
            hwm = max((r.get("hwm_mb", 0) for r in rs), default=0)
            cpu = statistics.mean(r.get("cpu", 0) for r in rs)
            cpu_txt = f"{cpu:.2f}"
            if any("rcpu" in r for r in rs):
                cpu_txt += f" +{statistics.mean(r.get('rcpu', 0) for r in rs):.2f} redis"
            loads = [r["load"] for r in rs if "load" in r]
            load_txt = " / ".join(f"{x:.1f}" for x in loads) if loads else "–"
            summary[(scenario, t)] = dict(ratio=hr, p99=p99, hwm=hwm, dj_red=dj_red, rps=mean_rps)
            lines.append(
                f"| {TARGETS[t]} | {' / '.join(fmt_int(r['rps']) for r in rs)} | **{fmt_int(mean_rps)}** "
                f"| {hr:.3f} | {f'{dj_sql:.0f}×' if dj_sql else '–'} | {f'{dj_red:.0f}×' if dj_red else '–'} "
                f"| {p50:.2f} | {p99:.2f} | {errors} | {status_txt} | {cpu_txt} | {hwm:.1f} | {load_txt} |"
                if hr is not None else
                f"| {TARGETS[t]} | {' / '.join(fmt_int(r['rps']) for r in rs)} | {fmt_int(mean_rps)} | – | – | – "
                f"| {p50:.2f} | {p99:.2f} | {errors} | {status_txt} | {cpu_txt} | {hwm:.1f} | {load_txt} |")
        if scenario == "S1" and ("S1", "portico-noevents") in groups and ("S1", "portico-sqlite") in groups:
            on_off = ratio("S1", "portico-sqlite", "S1", "portico-noevents")
            summary["events"] = on_off
            lines += ["", f"Event log cost: S1 with the event log on ÷ S1 with it off (same round, mean over rounds) "
                          f"= **{on_off:.3f}** (target > 0.95)."]
        lines.append("")

    # ---------------------------------------------------------------- against the peers
    ratio_rows, cost_rows = [], []
    for scenario in PAGE_SCENARIOS:
        for store, store_name in STORES.items():
            pt = f"portico-{store}"
            if (scenario, pt) not in groups:
                continue
            peers = [f"{p}-{store}" for p in RUST_PEERS]
            django = f"django-{store}"
            replay = "replay" if store == "sqlite" and (scenario, "replay") in groups else None
            sites = [pt] + peers + [replay, django]

            def rps_cell(t):
                rs = groups.get((scenario, t)) if t else None
                return fmt_int(statistics.mean(r["rps"] for r in rs)) if rs else "–"

            def ratio_cell(b, spec=".2f", unit=""):
                x = ratio(scenario, pt, scenario, b) if b and (scenario, b) in groups else None
                return f"**{x:{spec}}{unit}**" if x else "–"

            def us_cell(t):
                x = cpu_us(scenario, t) if t else None
                return f"{x:,.0f}" if x is not None else "–"

            ratio_rows.append(
                f"| {scenario} | {store_name} | {' | '.join(rps_cell(t) for t in sites)} "
                f"| {' | '.join(ratio_cell(b) for b in peers)} | {ratio_cell(replay, '.3f')} "
                f"| {ratio_cell('django-sqlite', '.0f', '×')} | {ratio_cell('django-redis', '.0f', '×')} |")
            own = cpu_us(scenario, pt)
            peer_cpu = [cpu_us(scenario, b) for b in peers]
            per_cost = " | ".join(f"{x / own:.2f}" if x and own else "–" for x in peer_cpu)
            if store == "redis":
                red = [redis_per_request(scenario, t) for t in [pt] + peers]
                cmds = " / ".join(f"{x[1]:.2f}" if x else "–" for x in red)
                rus = " / ".join(f"{x[0]:.0f}" if x else "–" for x in red)
            else:
                cmds = rus = "–"
            cost_rows.append(
                f"| {scenario} | {store_name} | {' | '.join(us_cell(t) for t in sites)} | {per_cost} "
                f"| {cmds} | {rus} |")
    if ratio_rows:
        peer_names = [f"{n} req/s" for n in RUST_PEERS.values()]
        lines += [
            "## Portico against its peers",
            "",
            "One line per scenario and session store. The Redis rows keep their models in PostgreSQL for",
            "portico and both Rust peers (each its own database); the SQLite rows keep them in SQLite. Replay is",
            "measured for S1, S4 and S5 against the SQLite row only; the Django column is Django with the same",
            "session store. **÷** and **×** columns: portico's req/s ÷ the other's req/s in the same round,",
            "then the mean over rounds (above 1, portico serves more); the ×Django columns divide by either",
            "Django variant, as in the tables above. The peers' S2 is their plain first visit: neither writes a",
            "session there, where portico keeps its CSRF secret in one.",
            "",
            f"| scenario | store | portico req/s | {' | '.join(peer_names)} | replay req/s | Django req/s "
            f"| {' | '.join(f'portico ÷ {n}' for n in RUST_PEERS.values())} | portico ÷ replay "
            "| ×Django SQLite | ×Django Redis |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ] + ratio_rows + [
            "",
            "Server CPU µs per request: the server's user + system time × run time ÷ requests, mean over runs",
            "(Django: gunicorn's master and workers; without redis-server's, given in the last column). **peer",
            "CPU ÷ portico CPU** above 1: the peer spends more per request. **Redis commands / request**:",
            "commands redis-server ran during the run (`INFO commandstats`, the INFO calls themselves",
            "excluded) ÷ requests; only one target is loaded at a time.",
            "",
            f"| scenario | store | portico | {' | '.join(RUST_PEERS.values())} | replay | Django "
            f"| {' | '.join(f'{n} CPU ÷ portico CPU' for n in RUST_PEERS.values())} "
            f"| Redis commands / req: portico / {' / '.join(RUST_PEERS)} "
            f"| redis-server CPU µs/req: portico / {' / '.join(RUST_PEERS)} |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ] + cost_rows + [""]

    # ---------------------------------------------------------------- the response alone
    replay_rows = []
    hello_us = cpu_us("hello", "hello")
    for scenario in ("S1", "S4", "S5"):
        rp, pt = summary.get((scenario, "replay")), summary.get((scenario, "portico-sqlite"))
        if not (rp and pt and rp["ratio"] and pt["ratio"]):
            continue
        us = [cpu_us(scenario, t) for t in ("replay", "portico-sqlite")]
        replay_rows.append(
            f"| {scenario} | {rp['ratio']:.3f} | {pt['ratio']:.3f} | **{ratio(scenario, 'portico-sqlite', scenario, 'replay'):.3f}** "
            f"| {hello_us:.1f} / {us[0]:.1f} / {us[1]:.1f} |")
    if replay_rows and hello_us:
        lines += [
            "## The response alone",
            "",
            "The *replay* rows: bench-hello sent the very response portico (SQLite row) gave in the checks",
            "below (status, headers, body) for the same requests from the same wrk script, with none of the",
            "work that made it. **replay ×hello** is therefore the most any server could reach for that page",
            "on this machine in this protocol; **portico ÷ replay** is the share of it portico reaches. Server",
            "CPU µs/req = the server's CPU cores × run time ÷ requests, mean over rounds; wrk uses the rest of",
            "the two cores, and its share grows with the size of the response it reads.",
            "",
            "| scenario | replay ×hello | portico ×hello | portico ÷ replay | server CPU µs/req: hello / replay / portico |",
            "|---|---|---|---|---|",
        ] + replay_rows + [""]

    # ---------------------------------------------------------------- cost with data
    counts = {}
    for t in GROWTH_TARGETS:
        p = os.path.join(outdir, "growth", f"counts-{t}.txt")
        if os.path.exists(p):
            counts[t] = dict(line.rstrip("\n").split("=", 1) for line in open(p) if "=" in line)
    growth = []
    for scenario, grown_what in GROWTH_SCENARIOS.items():
        small, big = rps_by_round(scenario, "store-small"), rps_by_round(scenario, "store-grown")
        common = sorted(set(small) & set(big))
        if not common:
            continue
        ratios = [big[k] / small[k] for k in common]
        mean_ratio = statistics.mean(ratios)
        errors = 0
        for t in GROWTH_TARGETS:
            rs = groups[(scenario, t)]
            total = sum(r["requests"] for r in rs)
            bad = sum(v for r in rs for k, v in r["statuses"].items() if k not in DEFAULT_EXPECTED)
            errors += bad + sum(r["sockerr"] for r in rs)
            if total and bad + sum(r["sockerr"] for r in rs) > total / 2:
                failed.append(f"{scenario} on the {GROWTH_TARGETS[t]} (cost with data): most responses wrong")
        p99 = [statistics.median(r["p99"] for r in groups[(scenario, t)]) for t in GROWTH_TARGETS]
        # Server CPU time per request: less moved than req/s by other work on the machine.
        g_cpu_us = [statistics.mean(r.get("cpu", 0) * r["duration_s"] / r["requests"] * 1e6
                                    for r in groups[(scenario, t)] if r["requests"]) for t in GROWTH_TARGETS]
        n = {t: counts.get(t, {}).get(grown_what) for t in GROWTH_TARGETS}
        what = ("sessions in the store" if grown_what == "sessions" else "notes of other users")
        label = (f"{scenario} with {int(n['store-grown']):,} {what} ÷ with {int(n['store-small']):,}"
                 if all(n.values()) else f"{scenario} grown store ÷ small store")
        growth.append(dict(scenario=scenario, label=label, small=small, big=big, common=common,
                           ratios=ratios, mean=mean_ratio, p99=p99, cpu_us=g_cpu_us, errors=errors))
    if growth:
        lines += [
            "## Cost with data",
            "",
            "PERF.md: \"S1 with 1 M sessions in the store within 10 % of S1 with 100; S5 with 100 k notes of",
            "other users within 10 % of S5 with none.\" Two servers set up like *portico, SQLite sessions* (same",
            "settings, event log on): the **small store** is a copy of its data dir as seeding left it, before",
            "any load; the **grown store** is a second copy to which `bench/grow.py` added sessions (keys",
            "of the site's form: a creation-time prefix, then 64 random hex digits; live for the whole run;",
            "data like the site's own rows) and users with notes, one",
            "transaction per database, while no server had it open. Both copies were WAL-checkpointed before",
            "their servers started; the pools (same session cookies, same bench user) are those of the main",
            "runs. Both servers were up and got 1 s of each scenario first; then each wrk run (the settings",
            "above) loaded one of them, in the order S1 small, S1 grown, S5 small, S5 grown, every round.",
            "**grown ÷ small** divides req/s of the same round; the rule is about cost growing, so it is met",
            f"when the mean ratio is ≥ {GROWTH_MIN:.2f} (a ratio above 1.10 would be noise of the run). **server CPU",
            "µs/req** = the server's CPU cores × run time ÷ requests, mean over rounds: the cost itself, which",
            "other work on the machine moves less than req/s.",
            "",
            "| scenario | req/s, small store, per round | req/s, grown store, per round | grown ÷ small, per round "
            "| mean grown ÷ small | p99 ms small / grown | server CPU µs/req small / grown | errors | within 10 %? |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for g in growth:
            ok = g["mean"] >= GROWTH_MIN
            verdict = ("yes" if ok else "**no**") + (" (above 1.10: noise)" if g["mean"] > 1.10 else "")
            lines.append(
                f"| {g['label']} | {' / '.join(fmt_int(g['small'][k]) for k in g['common'])} "
                f"| {' / '.join(fmt_int(g['big'][k]) for k in g['common'])} "
                f"| {' / '.join(f'{x:.3f}' for x in g['ratios'])} | **{g['mean']:.3f}** "
                f"| {g['p99'][0]:.2f} / {g['p99'][1]:.2f} | {g['cpu_us'][0]:.0f} / {g['cpu_us'][1]:.0f} "
                f"| {g['errors']} | {verdict} |")
        if counts:
            user = next(iter(counts.values())).get("user", "the bench user")
            lines += ["", "Rows present in the two stores (counted with `bench/grow.py count` before the servers started;",
                      "file sizes include the WAL):",
                      "",
                      f"| store | sessions | of them live | users | notes | notes of {user} | notes of other users "
                      "| sessions.sqlite3 | portico.sqlite3 |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for t, name in GROWTH_TARGETS.items():
                c = counts.get(t, {})
                if {"sessions", "sessions_live", "users", "notes", "notes_user", "notes_others",
                        "sessions_bytes", "portico_bytes"} <= c.keys():
                    lines.append(
                        f"| {name} | {int(c['sessions']):,} | {int(c['sessions_live']):,} | {int(c['users']):,} "
                        f"| {int(c['notes']):,} | {int(c['notes_user']):,} | {int(c['notes_others']):,} "
                        f"| {fmt_bytes(c['sessions_bytes'])} | {fmt_bytes(c['portico_bytes'])} |")
        lines.append("")

    # ---------------------------------------------------------------- targets
    cols = [(sc, st) for sc in PAGE_SCENARIOS for st in STORES if (sc, f"portico-{st}") in groups]
    met = total = 0

    def judged(text, ok):
        nonlocal met, total
        total += 1
        met += ok
        return f"{text} met" if ok else f"**{text} not met**"

    def ratio_to(sc, st, other):
        return ratio(sc, f"portico-{st}", sc, other) if (sc, other) in groups else None

    target_rows = []
    for p, name in RUST_PEERS.items():
        cells = []
        for sc, st in cols:
            x = ratio_to(sc, st, f"{p}-{st}")
            cells.append(judged(f"{x:.2f}", x >= RUST_PEER_MIN) if x else "–")
        target_rows.append((f"portico ÷ {name}", f"≥ {RUST_PEER_MIN} everywhere", cells))
    cells = []
    for sc, st in cols:
        x = ratio_to(sc, st, "replay") if st == "sqlite" and sc in REPLAY_TARGETS else None
        cells.append(judged(f"{x:.3f}", x >= REPLAY_TARGETS[sc]) if x
                     else ("–" if st == "sqlite" and sc in REPLAY_TARGETS else ""))
    target_rows.append(("portico ÷ replay", ", ".join(f"{sc} ≥ {v}" for sc, v in REPLAY_TARGETS.items())
                        + " (SQLite)", cells))
    cells = []
    for sc, st in cols:
        x = ratio_to(sc, st, "django-redis") if sc in DJANGO_TARGETS else None
        cells.append(judged(f"{x:.0f}×", x >= DJANGO_TARGETS[sc]) if x else ("–" if sc in DJANGO_TARGETS else ""))
    target_rows.append(("× Django + Redis", ", ".join(f"{sc} ≥ {v}×" for sc, v in DJANGO_TARGETS.items()), cells))
    cells = []
    for sc, st in cols:
        sm = summary.get((sc, f"portico-{st}"))
        cells.append(judged(f"{sm['p99']:.2f} ms", sm["p99"] <= P99_TARGETS_MS[sc])
                     if sm and sc in P99_TARGETS_MS else "")
    target_rows.append(("p99 at 32 connections", ", ".join(f"{sc} ≤ {v:g} ms" for sc, v in P99_TARGETS_MS.items()),
                        cells))
    cells = []
    for sc, st in cols:
        sm = summary.get((sc, f"portico-{st}"))
        cells.append(judged(f"{sm['hwm']:.1f} MB", sm["hwm"] <= RSS_TARGET_MB) if sm else "")
    target_rows.append(("peak RSS under load", f"≤ {RSS_TARGET_MB} MB", cells))
    head = []
    if cols:
        unmeasured = sum(c == "–" for _, _, cells in target_rows for c in cells)
        head = [
            "## Targets",
            "",
            f"PERF.md's targets against this run: **{met} of {total} met**"
            + (f", {unmeasured} not measured" if unmeasured else "") + ". A cell is one scenario with one",
            "session store of portico (Redis: models in PostgreSQL); ratios are portico's req/s ÷ the other's",
            "in the same round, mean over rounds (the tables below give every figure). \"–\": a target this run",
            "did not measure (the header says why); empty: no target there.",
            "",
            f"| measure | target | {' | '.join(f'{sc} {STORES[st]}' for sc, st in cols)} |",
            "|---|---|" + "---|" * len(cols),
        ] + [f"| {a} | {b} | {' | '.join(c)} |" for a, b, c in target_rows] + [""]

    # Checks that are not among the restated targets, or not per scenario.
    rows = []
    peaks = [(v["hwm"], k) for k, v in summary.items() if isinstance(k, tuple) and k[1].startswith("portico")]
    if peaks:
        peak, (ps, pt) = max(peaks)
        dj = [v["hwm"] for k, v in summary.items() if isinstance(k, tuple) and k[1] == "django-redis"]
        if dj:
            rows.append((f"RSS: Django+Redis peak ÷ portico peak ({peak:.1f} MB, {ps} on {TARGETS[pt]})",
                         f"{max(dj) / peak:.1f}×", "≥ 4×", max(dj) / peak >= 4))
    if "events" in summary:
        rows.append(("S1 events on ÷ events off", f"{summary['events']:.3f}", "> 0.95", summary["events"] > 0.95))
    for g in growth:
        rows.append((f"{g['label']} (SQLite, cost with data)", f"{g['mean']:.3f}", f"≥ {GROWTH_MIN:.2f}",
                     g["mean"] >= GROWTH_MIN))
    if rows:
        lines += ["## Other checks", "",
                  "| what | measured | target | met? |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {'yes' if ok else '**no**'} |" for a, b, c, ok in rows]
        lines.append("")
    lines = [open(os.path.join(outdir, "meta.txt")).read().rstrip(), ""] + head + lines
    if failed:
        lines += ["## FAILED scenarios", ""] + [f"- {f}" for f in failed] + [""]
    for extra in ("checks.md", "storeops.md", "notes.md", "captcha.md"):
        p = os.path.join(outdir, extra)
        if os.path.exists(p):
            lines += [open(p).read().rstrip(), ""]
    with open(results, "w") as f:
        f.write("\n".join(lines))
    for f_ in failed:
        print("FAILED:", f_, file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
