//! The site's edges against the requests an attacker sends: `next` pointing elsewhere, a foreign
//! `Host`, weak passwords, look-alike usernames, and who can read the data folder.

mod common;

use std::path::Path;

use common::{browser, location, login, register, temp_dir, TestApp, PASSWORD};
use portico::sqlite::rusqlite;
use reqwest::StatusCode;

/// The usernames stored in the site's database.
fn usernames(app: &TestApp) -> Vec<String> {
    let db = rusqlite::Connection::open(app.data_dir.join("portico.sqlite3")).expect("open db");
    let mut q = db
        .prepare("SELECT username FROM users ORDER BY id")
        .expect("query");
    let names = q
        .query_map([], |r| r.get::<_, String>(0))
        .expect("rows")
        .collect::<Result<Vec<_>, _>>()
        .expect("names");
    names
}

/// Sessions in the site's SQLite session store.
fn session_count(app: &TestApp) -> i64 {
    let path = app.data_dir.join("sessions.sqlite3");
    let db = rusqlite::Connection::open(path).expect("open sessions");
    db.query_row("SELECT COUNT(*) FROM portico_session_records", [], |r| {
        r.get(0)
    })
    .expect("count")
}

#[tokio::test]
async fn next_that_a_browser_reads_as_another_site_is_ignored() {
    let app = TestApp::spawn(&[]);
    let r = register(&browser(), &app, "ada", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // What the form carries after decoding: `next=/%09/evil.test`, `next=/%7F`, ...
    for next in [
        "/\t/evil.test",
        "/\u{7f}",
        "\\\\evil.test",
        "https://evil.test/",
    ] {
        let c = browser();
        let r = login(&c, &app, "ada", PASSWORD, &[("next", next)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "next={next:?}");
        assert_eq!(location(&r), "/notes/", "next={next:?}");
        // The login happened; only the destination was refused.
        let page = c.get(app.url("/notes/")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "next={next:?}");
    }
    // A page of the site is still where the login goes.
    let r = login(
        &browser(),
        &app,
        "ada",
        PASSWORD,
        &[("next", "/notes/?tag=work")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes/?tag=work");
}

#[tokio::test]
async fn unsafe_next_is_not_echoed_into_the_login_page() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let html = c
        .get(app.url("/accounts/login/?next=/%09/evil.test"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("evil.test"), "{html}");
    let html = c
        .get(app.url("/accounts/login/?next=/notes/%3Ftag%3Dwork"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // minijinja escapes `/` in attributes.
    assert!(
        html.contains("name=\"next\" value=\"&#x2f;notes&#x2f;?tag=work\""),
        "{html}"
    );
}

#[tokio::test]
async fn a_foreign_host_gets_400_and_no_session_or_cookie() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    for path in ["/", "/accounts/login/", "/accounts/register/", "/captcha/"] {
        let r = c
            .get(app.url(path))
            .header("host", "evil.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(r.headers().get("set-cookie").is_none(), "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("does not answer to the host name"), "{body}");
    }
    let r = c
        .post(app.url("/accounts/login/"))
        .header("host", "evil.test:8000")
        .form(&[("username", "ada"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(session_count(&app), 0);
}

#[tokio::test]
async fn allowed_hosts_are_served_and_the_health_check_answers_any_host() {
    // Bound to a loopback address without the setting: the loopback names.
    let local = TestApp::spawn(&[]);
    let port = local.base.rsplit(':').next().unwrap().to_string();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = browser()
            .get(local.url("/"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    let r = browser()
        .get(local.url("/healthz"))
        .header("host", "10.0.0.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let app = TestApp::spawn(&[("PORTICO_ALLOWED_HOSTS", ".portico.test")]);
    for (host, status) in [
        ("news.portico.test", StatusCode::OK),
        ("portico.test:8080", StatusCode::OK),
        ("127.0.0.1", StatusCode::BAD_REQUEST),
        ("evilportico.test", StatusCode::BAD_REQUEST),
    ] {
        let r = browser()
            .get(app.url("/"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{host}");
    }
}

#[test]
fn a_public_bind_without_allowed_hosts_refuses_to_start() {
    let dir = temp_dir("hosts");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(&dir)
        .env_remove("PORTICO_ALLOWED_HOSTS")
        .env_remove("PORTICO_CAPTCHA_TEST_ANSWER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run portico");
    // It must stop by itself; a server that starts serving is stopped here and fails the test.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| !s.success()),
        "started instead of refusing: {err}"
    );
    assert!(err.contains("PORTICO_ALLOWED_HOSTS is not set"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

#[tokio::test]
async fn weak_passwords_are_refused_and_no_account_is_written() {
    let app = TestApp::spawn(&[]);
    for (password, message) in [
        ("password", "This password is too common."),
        ("12345678", "This password is entirely numeric."),
        ("aaaaaaaa", "This password is too common."),
        (
            "ada.lovelace1",
            "The password is too similar to the username.",
        ),
        ("short", "This password is too short."),
    ] {
        let r = register(&browser(), &app, "ada.lovelace", password).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{password}");
        assert!(r.headers().get("location").is_none());
        let html = r.text().await.unwrap();
        assert!(html.contains(message), "{password}: {html}");
        // The form comes back with the name kept and the password not.
        assert!(html.contains("value=\"ada.lovelace\""), "{html}");
        assert!(!html.contains(&format!("value=\"{password}\"")), "{html}");
    }
    assert!(usernames(&app).is_empty());
    let r = register(&browser(), &app, "ada.lovelace", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(usernames(&app), ["ada.lovelace"]);
}

#[tokio::test]
async fn look_alike_usernames_are_one_account() {
    let app = TestApp::spawn(&[]);
    let r = register(&browser(), &app, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    for other in ["Alice", "ａｌｉｃｅ", "ALICE "] {
        let r = register(&browser(), &app, other, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{other}");
        let html = r.text().await.unwrap();
        assert!(html.contains("That username is taken"), "{other}: {html}");
    }
    assert_eq!(usernames(&app), ["alice"]);
    // Any form of the name logs in to the one account.
    for typed in ["ALICE", "ａｌｉｃｅ", "Alice"] {
        let c = browser();
        let r = login(&c, &app, typed, PASSWORD, &[]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{typed}");
        let page = c.get(app.url("/notes/")).send().await.unwrap();
        let html = page.text().await.unwrap();
        assert!(html.contains(">alice<"), "{typed}: {html}");
    }
}

#[tokio::test]
async fn createuser_applies_the_same_rules() {
    let dir = temp_dir("createuser");
    let run = |name: &str, password: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("createuser")
            .arg("--data-dir")
            .arg(&dir)
            .args(extra)
            .arg(name)
            .env("PORTICO_PASSWORD", password)
            .env_remove("PORTICO_DATABASE_URL")
            .output()
            .expect("run createuser")
    };
    let out = run("bob", "password", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("This password is too common."));
    assert!(run("ｂｏｂ", PASSWORD, &[]).status.success());
    let out = run("BOB", PASSWORD, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
    // An operator can still make a fixture account with a weak password, by saying so.
    assert!(run("carol", "password", &["--no-validate"])
        .status
        .success());
    let db = rusqlite::Connection::open(dir.join("portico.sqlite3")).unwrap();
    let names: Vec<String> = db
        .prepare("SELECT username FROM users ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["bob", "carol"]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file and folder under `dir` with its mode.
fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push((p.clone(), mode(&p)));
        if p.is_dir() {
            walk(&p, out);
        }
    }
}

#[tokio::test]
async fn the_data_folder_is_private_to_the_server_user() {
    let parent = temp_dir("perms");
    let data = parent.join("data");
    let mut app = TestApp::spawn_in(data.clone(), &[]);
    // A session, an account and events, so that every kind of file exists.
    let r = register(&browser(), &app, "ada", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut files = Vec::new();
    walk(&data, &mut files);
    app.stop();
    walk(&data, &mut files);
    assert_eq!(mode(&data), 0o700);
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| p.strip_prefix(&data).unwrap().display().to_string())
        .collect();
    for expected in [
        "portico.sqlite3",
        "sessions.sqlite3",
        "secret_key",
        "events",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.ends_with("-wal")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("events/")), "{names:?}");
    for (p, m) in &files {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} has mode {m:o}", p.display());
    }
    drop(app);
    let _ = std::fs::remove_dir_all(&parent);
}

#[tokio::test]
async fn accounts_from_before_the_key_get_it_and_an_old_clash_keeps_both_logins() {
    let parent = temp_dir("backfill");
    let data = parent.join("data");
    let migrate = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("migrate")
            .arg("--data-dir")
            .arg(&data)
            .env_remove("PORTICO_DATABASE_URL")
            .output()
            .expect("run migrate");
        assert!(out.status.success(), "{out:?}");
        out
    };
    migrate();
    // Two accounts made before names were folded: same name but for case, no keys.
    {
        let db = rusqlite::Connection::open(data.join("portico.sqlite3")).unwrap();
        for name in ["bob", "Bob"] {
            db.execute(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?1, 'unused', 0)",
                [name],
            )
            .unwrap();
        }
    }
    let out = migrate();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("keeps its exact name"), "{log}");
    let db = rusqlite::Connection::open(data.join("portico.sqlite3")).unwrap();
    let keys: Vec<(String, Option<String>)> = db
        .prepare("SELECT username, username_key FROM users ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        keys,
        [
            ("bob".to_string(), Some("bob".to_string())),
            ("Bob".to_string(), None)
        ]
    );
    // No third form of the name can be registered.
    let app = TestApp::spawn_in(data.clone(), &[]);
    let r = register(&browser(), &app, "BOB", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    drop(app);
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 2);
    let _ = std::fs::remove_dir_all(&parent);
}
