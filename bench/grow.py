#!/usr/bin/env python3
"""Store helper of bench/run's growth part (Python standard library only).

PERF.md: "Cost must not grow with data: S1 with 1 M sessions in the store within 10 % of S1 with
100; S5 with 100 k notes of other users within 10 % of S5 with none." bench/run copies a seeded
data dir, fills the copy with this script while no server has it open, and loads both copies.

  grow.py grow DATADIR [--sessions N] [--users N] [--notes N]
      adds N sessions to DATADIR/sessions.sqlite3, and N users with N notes between them to
      DATADIR/portico.sqlite3; one transaction per database, then a WAL checkpoint, so that the
      server starts on a settled file like any server restarted on an old store.
  grow.py settle DATADIR
      only the WAL checkpoint of both databases (for the copy that is not grown, so that both
      stores start from settled files).
  grow.py count DATADIR --user NAME
      the rows actually present, as "key=value" lines (read by bench/report.py).

The rows look like the ones the site writes (seen in a seeded store): a session is keyed by its
storage key (the id's creation time in microseconds as 16 hex digits, then the 64-hex SHA-256 of
the id), lives 14 days, and holds its values JSON-encoded inside a JSON object
("__csrf" for every session, "_auth_user" for logged-in ones). Filler data is drawn from a fixed
seed, so every run measures the same store.
"""
import argparse
import base64
import json
import os
import random
import sqlite3
import sys
import time

SESSION_AGE = 14 * 24 * 3600  # the site's session lifetime (expires_at - created_at of real rows)
LOGGED_IN_SHARE = 0.1         # the part of the filler sessions that belongs to a filler user
TAG_BITS = 5                  # tags is a bit set over the site's five fixed tags


def connect(path):
    if not os.path.exists(path):
        raise SystemExit(f"{path}: no such database (a seeded data dir is needed)")
    conn = sqlite3.connect(path, isolation_level=None)
    # A big page cache keeps one large transaction in memory instead of spilling it to disk.
    conn.execute("PRAGMA cache_size = -524288")
    return conn


def settle(conn):
    """Folds the WAL into the database file, so the grown store starts as an old one would."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise SystemExit("WAL checkpoint blocked: is a server still using this data dir?")


def data_prefix(user):
    """The start of a session's JSON text: "{" or "{" + its "_auth_user" entry + ","."""
    if user is None:
        return "{"
    auth = json.dumps({"id": user[0], "username": user[1]}, separators=(",", ":"))
    return json.dumps({"_auth_user": auth}, separators=(",", ":"))[:-1] + ","


def session_data(rng, prefix):
    # The same text as json.dumps of {..., "__csrf": json.dumps(token)}, written out directly
    # because a million json.dumps calls take longer than the inserts (a base64url token needs
    # no escaping).
    token = base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode()
    return prefix + '"__csrf":"\\"' + token + '\\""}'


def grow_users_and_notes(path, n_users, n_notes, rng, now):
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    users = []
    for i in range(n_users):
        name = f"filler{i + 1:06d}"
        # "!" marks an unusable password (no hash verifies against it): nobody logs in as these.
        # The key of an ASCII name is its lower case (the site's NFKC + case fold).
        cur = conn.execute("INSERT INTO users (username, username_key, password_hash, created_at) "
                           "VALUES (?, ?, ?, ?)",
                           (name, name.lower(), "!bench-filler", now - rng.randrange(365 * 86400)))
        users.append((cur.lastrowid, name))
    # In created order, as a site would have written them: the owners interleave.
    notes = []
    for i in range(n_notes):
        owner = users[i % n_users][0] if users else None
        created = now - rng.randrange(365 * 86400)
        notes.append((owner, created))
    notes.sort(key=lambda n: n[1])
    conn.executemany(
        "INSERT INTO notes (owner_id, title, body, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        ((owner, f"Filler note {i + 1}", f"Body of filler note {i + 1}. " * 6, rng.randrange(1 << TAG_BITS),
          created, created + rng.randrange(86400)) for i, (owner, created) in enumerate(notes)))
    conn.execute("COMMIT")
    settle(conn)
    conn.close()
    return users


def grow_sessions(path, n, users, rng, now):
    conn = connect(path)
    prefixes = [data_prefix(u) for u in users]
    rows = []
    for _ in range(n):
        created = now - rng.randrange(SESSION_AGE // 2)  # every one still live during the run
        prefix = prefixes[rng.randrange(len(users))] if users and rng.random() < LOGGED_IN_SHARE else "{"
        key = f"{created * 1_000_000 + rng.randrange(1_000_000):016x}{rng.randbytes(32).hex()}"
        rows.append((key, created, created + SESSION_AGE, session_data(rng, prefix)))
    # Key order turns a million random B-tree inserts into appends: seconds instead of minutes.
    rows.sort()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO portico_session_records (id, created_at, expires_at, data) VALUES (?, ?, ?, ?)",
                     rows)
    conn.execute("COMMIT")
    settle(conn)
    conn.close()


def cmd_grow(a):
    if a.notes and not a.users:
        raise SystemExit("notes of other users need other users (--users)")
    rng = random.Random(20261125)
    now = int(time.time())
    t0 = time.time()
    users = grow_users_and_notes(os.path.join(a.datadir, "portico.sqlite3"), a.users, a.notes, rng, now)
    t1 = time.time()
    grow_sessions(os.path.join(a.datadir, "sessions.sqlite3"), a.sessions, users, rng, now)
    t2 = time.time()
    print(f"added {a.users} users and {a.notes} notes ({t1 - t0:.1f} s), {a.sessions} sessions ({t2 - t1:.1f} s)")


def cmd_settle(a):
    for name in ("portico.sqlite3", "sessions.sqlite3"):
        conn = connect(os.path.join(a.datadir, name))
        settle(conn)
        conn.close()


def cmd_count(a):
    now = int(time.time())
    db = connect(os.path.join(a.datadir, "portico.sqlite3"))
    st = connect(os.path.join(a.datadir, "sessions.sqlite3"))
    uid = db.execute("SELECT id FROM users WHERE username = ?", (a.user,)).fetchone()
    if uid is None:
        raise SystemExit(f"no user {a.user} in {a.datadir}")
    out = {
        "user": a.user,
        "sessions": st.execute("SELECT count(*) FROM portico_session_records").fetchone()[0],
        "sessions_live": st.execute("SELECT count(*) FROM portico_session_records WHERE expires_at > ?",
                                    (now,)).fetchone()[0],
        "users": db.execute("SELECT count(*) FROM users").fetchone()[0],
        "notes": db.execute("SELECT count(*) FROM notes").fetchone()[0],
        "notes_user": db.execute("SELECT count(*) FROM notes WHERE owner_id = ?", uid).fetchone()[0],
    }
    out["notes_others"] = out["notes"] - out["notes_user"]
    for name in ("sessions.sqlite3", "portico.sqlite3"):
        path = os.path.join(a.datadir, name)
        wal = path + "-wal"
        out[name.split(".")[0] + "_bytes"] = os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)
    db.close()
    st.close()
    for k, v in out.items():
        print(f"{k}={v}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("grow")
    s.add_argument("datadir")
    s.add_argument("--sessions", type=int, default=1_000_000)
    s.add_argument("--users", type=int, default=1_000)
    s.add_argument("--notes", type=int, default=100_000)
    s = sub.add_parser("settle")
    s.add_argument("datadir")
    s = sub.add_parser("count")
    s.add_argument("datadir")
    s.add_argument("--user", required=True)
    a = ap.parse_args()
    {"grow": cmd_grow, "settle": cmd_settle, "count": cmd_count}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
