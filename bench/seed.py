#!/usr/bin/env python3
"""HTTP helper of bench/run (Python standard library only).

Everything goes through the site's own pages, so the sessions and CSRF tokens the load uses
are exactly what a browser would hold:

  seed.py seed  BASE POOLFILE [--sessions N]
      writes session pools for bench/lib/pool.lua. Pools "visit" and "post": anonymous sessions
      made as a browser makes them, by a first GET of the login form and then of its captcha
      image (a form alone starts no session: its CSRF secret is in a cookie, which the session
      then takes over), each with the CSRF token the form carried.
  seed.py login BASE POOLFILE --user NAME --password PW [--notes N] [--sessions N]
      appends pool "user": sessions of NAME logged in through the login form (the server runs in
      captcha test mode while seeding), after NAME got N notes through /notes/new/.
  seed.py check BASE POOLFILE [--save DIR]
      one request of every scenario, printed with its status; exit 1 when one is wrong. With
      --save, each response is also written to DIR/SCENARIO.http (status line, headers, empty
      line, body) for bench-hello --replay.
  seed.py drive BASE POOLFILE SCENARIO N
      sends exactly N requests of a scenario one after another (to count store operations).
  seed.py opsdiff LABEL N STATUSES REDIS_BEFORE REDIS_AFTER PG_BEFORE PG_AFTER
      one Markdown row of store operations per request from two snapshots of each store.
  seed.py django POOLFILE SEEDFILE...
      converts the Django peer's seed files (its own seed.py) into the same pool format.

Pool file lines: POOL <TAB> Cookie header value <TAB> CSRF token (or "-").
"""
import argparse
import http.client
import os
import re
import sys
import urllib.parse

CAPTCHA_TEST_ANSWER = "test-captcha"
SESSION_COOKIE = "sessionid"
# The same form body for Portico and Django: extra fields (hobby) are ignored by Portico.
S4_BODY = ("csrfmiddlewaretoken={token}&username=alice&password=s3cret"
           "&hobby=reading&hobby=music&hobby=coding&captcha=ZZZZ")

TOKEN_RES = [
    re.compile(r'name="csrfmiddlewaretoken"[^>]*?value="([^"]+)"'),
    re.compile(r'value="([^"]+)"[^>]*?name="csrfmiddlewaretoken"'),
]


class Client:
    """A minimal browser: one keep-alive connection and a cookie dict (host-only cookies)."""

    def __init__(self, base, host_header=None):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.host_header = host_header
        self.cookies = {}
        self.conn = None

    def request(self, method, path, form=None, cookies=True):
        body, headers = None, {}
        if self.host_header:
            headers["Host"] = self.host_header
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):  # a server may close an idle keep-alive connection
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn = None
                if attempt == 2:
                    raise
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie":
                self._store_cookie(v)
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data

    def _store_cookie(self, header):
        name, _, rest = header.partition("=")
        value = rest.split(";", 1)[0]
        attrs = rest.lower()
        if "max-age=0" in attrs or value == "":
            self.cookies.pop(name.strip(), None)
        else:
            self.cookies[name.strip()] = value

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


def csrf_token(html):
    text = html.decode("utf-8", "replace")
    for r in TOKEN_RES:
        m = r.search(text)
        if m:
            return m.group(1)
    return None


def form_page(c):
    """GET the login form (the /demo/ form while the accounts pages are missing)."""
    for path in ("/accounts/login/", "/demo/"):
        st, _, body = c.request("GET", path)
        if st == 200 and csrf_token(body):
            return path, csrf_token(body)
    raise SystemExit(f"no form with a CSRF token at {c.host}:{c.port} (status {st})")


def login(base, user, password):
    c = Client(base)
    st, _, body = c.request("GET", "/accounts/login/")
    token = csrf_token(body)
    if st != 200 or not token:
        raise SystemExit(f"GET /accounts/login/: {st}, token {'found' if token else 'missing'}")
    st, _, _ = c.request("GET", "/captcha/")
    if st != 200:
        raise SystemExit(f"GET /captcha/: {st}")
    st, h, body = c.request("POST", "/accounts/login/", {
        "csrfmiddlewaretoken": token, "username": user, "password": password,
        "captcha": CAPTCHA_TEST_ANSWER})
    if st not in (302, 303):
        raise SystemExit(f"login of {user}: status {st} (expected a redirect): {body[:300]!r}")
    return c


def add_notes(c, n):
    st, _, body = c.request("GET", "/notes/new/")
    token = csrf_token(body)
    if st != 200 or not token:
        raise SystemExit(f"GET /notes/new/: {st}")
    tags = re.findall(r'name="tags"[^>]*?value="([^"]+)"', body.decode("utf-8", "replace"))
    tags = tags[:2] if tags else ["bench"]
    for i in range(n):
        st, _, body = c.request("POST", "/notes/new/", {
            "csrfmiddlewaretoken": token, "title": f"Bench note {i + 1}",
            "body": f"Body of note {i + 1}. " * 8, "tags": tags})
        if st not in (200, 302, 303):
            raise SystemExit(f"POST /notes/new/ #{i + 1}: {st}: {body[:300]!r}")


def cmd_seed(a):
    lines = []
    path = None
    for pool_name in ("visit", "post"):
        for _ in range(a.sessions):
            c = Client(a.base)
            path, token = form_page(c)
            if SESSION_COOKIE not in c.cookies:
                # The form's captcha image is what starts a visitor's session.
                c.request("GET", "/captcha/")
            sid = c.cookies.get(SESSION_COOKIE)
            if not sid:
                raise SystemExit(f"GET {path} and its captcha set no {SESSION_COOKIE} cookie")
            lines.append(f"{pool_name}\t{SESSION_COOKIE}={sid}\t{token}")
    with open(a.poolfile, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"seeded 2x{a.sessions} anonymous sessions from {path}")


def cmd_login(a):
    """Appends pool "user": --sessions logins of one user, after giving the user --notes notes."""
    c = login(a.base, a.user, a.password)
    if a.notes:
        add_notes(c, a.notes)
    lines = []
    for _ in range(a.sessions):
        c = login(a.base, a.user, a.password)
        lines.append(f"user\t{SESSION_COOKIE}={c.cookies[SESSION_COOKIE]}\t-")
    with open(a.poolfile, "a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"seeded {a.sessions} logged-in sessions of {a.user} ({a.notes} notes)")


def pool(poolfile, name):
    out = []
    for line in open(poolfile):
        p = line.rstrip("\n").split("\t")
        if p[0] == name:
            out.append((p[1], p[2]))
    return out


# scenario -> (method, path, pool or None, expected statuses)
SCENARIOS = {
    "S1": ("GET", "/accounts/login/", "visit", {200}),
    "S2": ("GET", "/accounts/login/", None, {200}),
    "S3": ("GET", "/captcha/", "visit", {200}),
    "S4": ("POST", "/accounts/login/", "post", {200, 400}),
    "S5": ("GET", "/notes/", "user", {200}),
    "demo": ("GET", "/demo/", "visit", {200}),
}


def one(base, scenario, cookie, token):
    method, path, _, _ = SCENARIOS[scenario]
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    body = None
    if method == "POST":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = S4_BODY.format(token=token)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type", ""), data, r.getheaders()


def save(path, status, headers, body):
    """A response in the form bench-hello --replay reads."""
    with open(path, "wb") as f:
        f.write(f"{status}\n".encode())
        for k, v in headers:
            f.write(f"{k.lower()}: {v}\n".encode("latin-1"))
        f.write(b"\n" + body)


def cmd_check(a):
    ok = True
    for s, (method, path, p, want) in SCENARIOS.items():
        entries = pool(a.poolfile, p) if p else [(None, None)]
        if not entries:
            print(f"{s}: {method} {path}: no '{p}' sessions seeded  SKIP")
            continue
        st, ctype, data, headers = one(a.base, s, *entries[0])
        if a.save:
            save(os.path.join(a.save, f"{s}.http"), st, headers, data)
        good = st in want
        if s == "S3":
            good &= data[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"{s}: {method} {path}: {st} {ctype} {len(data)} bytes  {'OK' if good else 'FAIL'}")
        ok &= good
    sys.exit(0 if ok else 1)


def cmd_drive(a):
    _, _, p, want = SCENARIOS[a.scenario]
    entries = pool(a.poolfile, p) if p else [(None, None)]
    counts = {}
    for i in range(a.n):
        st, _, _, _ = one(a.base, a.scenario, *entries[i % len(entries)])
        counts[st] = counts.get(st, 0) + 1
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    sys.exit(0 if set(counts) <= want else 1)


def cmd_django(a):
    lines = []
    for seedfile in a.seedfiles:
        seed = {"visit": [], "post": []}
        secret = token = None
        for line in open(seedfile):
            k, v = line.split()
            if k == "csrf_secret":
                secret = v
            elif k == "csrf_token":
                token = v
            else:
                seed[k].append(v)
        for name, keys in seed.items():
            for key in keys:
                lines.append(f"{name}\tcsrftoken={secret}; sessionid={key}\t{token}")
    with open(a.poolfile, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_redis_stats(path):
    calls = {}
    for line in open(path):
        if line.startswith("cmdstat_"):
            name, _, rest = line.strip().partition(":")
            d = dict(kv.split("=") for kv in rest.split(","))
            calls[name[len("cmdstat_"):]] = int(d["calls"])
    return calls


PG_FIELDS = ["xact_commit", "xact_rollback", "tup_fetched", "tup_inserted",
             "tup_updated", "tup_deleted", "seq_scan", "idx_scan"]


def read_pg_stats(path):
    text = open(path).read().strip()
    if not text:
        return None
    return dict(zip(PG_FIELDS, (int(x or 0) for x in text.split("|"))))


def cmd_opsdiff(a):
    """One Markdown table row: Redis commands and PostgreSQL activity per request."""
    rb, ra = read_redis_stats(a.redis_before), read_redis_stats(a.redis_after)
    per = {k: (ra.get(k, 0) - rb.get(k, 0)) / a.n for k in ra}
    # INFO is the measuring itself; the rest is the site's traffic.
    redis_txt = ", ".join(f"{k.upper()} {v:.2f}" for k, v in sorted(per.items())
                          if v > 0.004 and k not in ("info", "ping")) or "none"
    redis_total = sum(v for k, v in per.items() if k not in ("info", "ping"))
    pb, pa = read_pg_stats(a.pg_before), read_pg_stats(a.pg_after)
    if pb and pa:
        pa["xact_commit"] -= 1  # the snapshot query's own transaction
        d = {k: (pa[k] - pb[k]) / a.n for k in PG_FIELDS}
        pg_txt = (f"{d['xact_commit']:.2f} | {d['idx_scan'] + d['seq_scan']:.2f} | "
                  f"{d['tup_fetched']:.1f} | {d['tup_inserted'] + d['tup_updated'] + d['tup_deleted']:.2f}")
    else:
        pg_txt = "– | – | – | –"
    print(f"| {a.label} | {a.n} | {a.statuses} | {redis_total:.2f} | {redis_txt} | {pg_txt} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("base")
    s.add_argument("poolfile")
    s.add_argument("--sessions", type=int, default=64)
    s = sub.add_parser("login")
    s.add_argument("base")
    s.add_argument("poolfile")
    s.add_argument("--user", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--notes", type=int, default=50)
    s.add_argument("--sessions", type=int, default=16)
    s = sub.add_parser("check")
    s.add_argument("base")
    s.add_argument("poolfile")
    s.add_argument("--save", metavar="DIR")
    s = sub.add_parser("drive")
    s.add_argument("base")
    s.add_argument("poolfile")
    s.add_argument("scenario", choices=sorted(SCENARIOS))
    s.add_argument("n", type=int)
    s = sub.add_parser("django")
    s.add_argument("poolfile")
    s.add_argument("seedfiles", nargs="+")
    s = sub.add_parser("opsdiff")
    s.add_argument("label")
    s.add_argument("n", type=int)
    s.add_argument("statuses")
    s.add_argument("redis_before")
    s.add_argument("redis_after")
    s.add_argument("pg_before")
    s.add_argument("pg_after")
    a = ap.parse_args()
    {"seed": cmd_seed, "login": cmd_login, "check": cmd_check, "drive": cmd_drive, "django": cmd_django, "opsdiff": cmd_opsdiff}[a.cmd](a)


if __name__ == "__main__":
    main()
