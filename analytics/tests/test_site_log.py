"""The report over a log the real site wrote.

Starts the ``portico`` binary (``$PORTICO_BIN``, or the workspace's debug build, which the test
command builds before this suite runs), drives it over HTTP the way a password-guessing bot and a
normal user would, stops it gracefully so the log is flushed, runs the job over the log and checks
the numbers the driving produced.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from portico_analytics import job

REPO = Path(__file__).resolve().parents[2]
BRUTE = "198.51.100.7"
NORMAL = "192.0.2.10"
CAPTCHA = "test-captcha"
GUESSES = 12


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Lets the test see a redirect's status instead of following it."""

    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


class Browser:
    """A cookie-keeping HTTP client that claims to come from one address (via the proxy header)."""

    def __init__(self, base: str, address: str) -> None:
        self.base = base
        self.address = address
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def request(self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers={"X-Forwarded-For": self.address, **(headers or {})})
        try:
            with self.opener.open(req, timeout=20) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def token(self, path: str) -> str:
        _, html = self.request(path)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, username: str, password: str, captcha: str = CAPTCHA) -> int:
        token = self.token("/accounts/login/")
        self.request("/captcha/")
        status, _ = self.request(
            "/accounts/login/",
            {"csrfmiddlewaretoken": token, "username": username, "password": password, "captcha": captcha},
        )
        return status

    def register(self, username: str, password: str) -> int:
        token = self.token("/accounts/register/")
        self.request("/captcha/")
        status, _ = self.request(
            "/accounts/register/",
            {"csrfmiddlewaretoken": token, "username": username, "password": password, "password2": password, "captcha": CAPTCHA},
        )
        return status


def _binary() -> Path:
    path = Path(os.environ.get("PORTICO_BIN", REPO / "target" / "debug" / "portico"))
    if not path.exists():
        subprocess.run(["cargo", "build", "-p", "portico-site"], cwd=REPO, check=True)
    return path


@pytest.fixture(scope="module")
def site_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "PORTICO_CAPTCHA_TEST_ANSWER": CAPTCHA,
        "PORTICO_TRUST_X_FORWARDED_FOR": "true",
        "PORTICO_LOGIN_FAILS_PER_ACCOUNT": "1000",
        "PORTICO_LOGIN_FAILS_PER_IP": "1000",
        "PORTICO_LOG": "warn",
    }
    env.pop("PORTICO_DATABASE_URL", None)
    env.pop("PORTICO_SESSION_STORE", None)
    proc = subprocess.Popen(
        [str(_binary()), "serve", "--bind", "127.0.0.1:0", "--data-dir", str(data)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        base = line.split()[-1]

        user = Browser(base, NORMAL)
        assert user.register("alice", "correct horse") == 303
        bot = Browser(base, BRUTE)
        for i in range(GUESSES):
            assert bot.login("alice", f"guess-{i}") == 400
        assert bot.login("alice", "whatever", captcha="nope") == 400
        forged, _ = bot.request("/accounts/login/", {"username": "alice"}, {"Origin": "http://evil.test"})
        assert forged == 403
        other = Browser(base, NORMAL)
        assert other.login("alice", "wrong horse") == 400
        assert other.login("alice", "correct horse") == 303
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    yield data / "events"


def test_the_report_over_the_sites_own_log_flags_the_brute_force_address(spark, site_log: Path, tmp_path: Path) -> None:
    summary = job.run(["--events", str(site_log), "--out", str(tmp_path / "out")], spark=spark)

    assert summary["lines"]["bad"] == 0
    logins = summary["logins"]
    flagged = {r["client_ip"]: r for r in logins["bruteforce_addresses"]}
    assert set(flagged) == {BRUTE}
    assert flagged[BRUTE]["failures"] == GUESSES + 1  # the guesses and the one failed captcha
    by_address = {r["client_ip"]: r["failures"] for r in logins["top_addresses"]}
    assert by_address[NORMAL] == 1
    assert logins["ok"] == 1
    assert logins["registered"] == 1
    assert logins["failed_by_reason"]["bad_credentials"] == GUESSES + 1
    assert logins["failed_by_reason"]["captcha"] == 1

    captcha = summary["captcha"]
    latin = captcha["by_mode"]["latin"]
    # register + 12 guesses + 2 logins of the normal user solved it; the bot failed it once.
    assert latin["ok"] == GUESSES + 3
    assert latin["fail"] == 1
    assert latin["solve_rate"] == pytest.approx((GUESSES + 3) / (GUESSES + 4))

    assert summary["csrf"]["by_reason"] == {"bad_origin": 1}
    assert {r["origin"]: r["rejections"] for r in summary["csrf"]["by_origin"]} == {"http://evil.test": 1}

    routes = {r["path"]: r for r in summary["requests"]["top_routes"]}
    assert routes["/accounts/login/"]["requests"] >= 2 * (GUESSES + 3)
    assert routes["/captcha/"]["requests"] == GUESSES + 4
    assert (tmp_path / "out" / "summary.html").exists()
