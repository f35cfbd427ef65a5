//! Notes end to end against the real binary: create, list, filter by tag, edit, delete, paginate,
//! other users' notes answering 404, and the same core flow on PostgreSQL.

mod common;

use common::{browser, location, register, token_from, TestApp, PASSWORD};
use reqwest::{Client, Response, StatusCode};

/// A browser logged in as a new account `username`.
async fn signup(app: &TestApp, username: &str) -> Client {
    let c = browser();
    let r = register(&c, app, username, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "registering {username}");
    c
}

/// A name no earlier run used (the PostgreSQL database is shared between runs).
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

async fn post(c: &Client, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Response {
    c.post(app.url(path))
        .form(fields)
        .send()
        .await
        .expect("POST")
}

async fn get(c: &Client, app: &TestApp, path: &str) -> Response {
    c.get(app.url(path)).send().await.expect("GET")
}

/// GETs a page that must answer 200. The template engine escapes `/` in values as `&#x2f;`
/// (browsers read it back as `/`); it is turned back here so assertions can name URLs.
async fn page(c: &Client, app: &TestApp, path: &str) -> String {
    let r = get(c, app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.text().await.expect("body").replace("&#x2f;", "/")
}

/// The fields of a note form: token, title, body and one `tags` pair per tag.
fn note_fields<'a>(
    token: &'a str,
    title: &'a str,
    body: &'a str,
    tags: &[&'a str],
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("csrfmiddlewaretoken", token),
        ("title", title),
        ("body", body),
    ];
    fields.extend(tags.iter().map(|t| ("tags", *t)));
    fields
}

/// Creates a note; answers its id.
async fn create(c: &Client, app: &TestApp, token: &str, title: &str, tags: &[&str]) -> i64 {
    let body = format!("The text of {title}.");
    let r = post(
        c,
        app,
        "/notes/new/",
        &note_fields(token, title, &body, tags),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "creating {title}");
    note_id_of(&location(&r))
}

fn note_id_of(path: &str) -> i64 {
    path.strip_prefix("/notes/")
        .and_then(|p| p.strip_suffix('/'))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a note URL: {path}"))
}

/// The ids a list page shows, in order.
fn listed(html: &str) -> Vec<i64> {
    let marker = "class=\"note\" data-id=\"";
    html.match_indices(marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').expect("attribute ends")]
                .parse()
                .expect("numeric id")
        })
        .collect()
}

/// The message next to `field`, if any.
fn field_error(html: &str, field: &str) -> Option<String> {
    let start = format!("id=\"{field}-error\">");
    let from = html.find(&start)? + start.len();
    let to = html[from..].find("</p>")? + from;
    Some(html[from..to].to_string())
}

fn is_checked(html: &str, name: &str, value: &str) -> bool {
    html.contains(&format!("name=\"{name}\" value=\"{value}\" checked"))
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_login_and_home_welcomes_them() {
    let app = TestApp::spawn(&[]);
    let anon = browser();
    for path in ["/notes/", "/notes/new/", "/notes/1/", "/notes/1/edit/"] {
        let r = get(&anon, &app, path).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&r).starts_with("/accounts/login/?next=/notes/"));
    }
    let home = page(&anon, &app, "/").await;
    assert!(home.contains("href=\"/accounts/login/\""));
    assert!(home.contains("href=\"/accounts/register/\""));

    let c = signup(&app, "home-user").await;
    let r = get(&c, &app, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes/");
}

#[tokio::test]
async fn a_note_with_two_tags_is_created_listed_and_shown() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "writer").await;
    let list = page(&c, &app, "/notes/").await;
    assert!(listed(&list).is_empty());

    let token = token_from(&c, &app, "/notes/new/").await;
    let body = "first line\nsecond <b>line</b>";
    let r = post(
        &c,
        &app,
        "/notes/new/",
        &note_fields(&token, "Trip plan", body, &["work", "ideas"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = note_id_of(&location(&r));

    let list = page(&c, &app, "/notes/").await;
    assert_eq!(listed(&list), [id]);
    assert!(list.contains("Trip plan"));
    assert!(list.contains("<span class=\"tag\">work</span><span class=\"tag\">ideas</span>"));

    let detail = page(&c, &app, &format!("/notes/{id}/")).await;
    assert!(detail.contains("Trip plan"));
    assert!(detail.contains("<span class=\"tag\">work</span>"));
    assert!(detail.contains("<span class=\"tag\">ideas</span>"));
    assert!(!detail.contains("<span class=\"tag\">home</span>"));
    // Autoescaped, line break kept for `white-space: pre-wrap`.
    assert!(detail.contains("first line\nsecond &lt;b&gt;line&lt;/b&gt;"));
    assert!(detail.contains("class=\"prewrap\""));
    assert!(detail.contains(&format!("href=\"/notes/{id}/edit/\"")));
    assert!(detail.contains(&format!("href=\"/notes/{id}/delete/\"")));
}

#[tokio::test]
async fn the_tag_filter_keeps_notes_with_any_of_the_tags() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "filterer").await;
    let token = token_from(&c, &app, "/notes/new/").await;
    let work = create(&c, &app, &token, "work only", &["work"]).await;
    let home = create(&c, &app, &token, "home only", &["home"]).await;
    let ideas = create(&c, &app, &token, "ideas only", &["ideas"]).await;
    let both = create(&c, &app, &token, "work and home", &["work", "home"]).await;
    let none = create(&c, &app, &token, "untagged", &[]).await;

    let html = page(&c, &app, "/notes/?tag=work").await;
    assert_eq!(listed(&html), [both, work]);
    assert!(is_checked(&html, "tag", "work"));
    assert!(!is_checked(&html, "tag", "home"));

    let html = page(&c, &app, "/notes/?tag=work&tag=home").await;
    assert_eq!(listed(&html), [both, home, work]);
    assert!(is_checked(&html, "tag", "work") && is_checked(&html, "tag", "home"));
    assert!(!is_checked(&html, "tag", "ideas"));

    // Unknown tag names are ignored: alone they filter nothing out.
    let html = page(&c, &app, "/notes/?tag=urgent").await;
    assert_eq!(listed(&html), [none, both, ideas, home, work]);
    let html = page(&c, &app, "/notes/?tag=ideas&tag=urgent").await;
    assert_eq!(listed(&html), [ideas]);

    let html = page(&c, &app, "/notes/?tag=reading").await;
    assert!(listed(&html).is_empty());
}

#[tokio::test]
async fn editing_keeps_or_changes_the_tags() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "editor").await;
    let token = token_from(&c, &app, "/notes/new/").await;
    let id = create(&c, &app, &token, "Draft", &["work", "todo"]).await;

    let form = page(&c, &app, &format!("/notes/{id}/edit/")).await;
    assert!(form.contains("value=\"Draft\""));
    assert!(is_checked(&form, "tags", "work") && is_checked(&form, "tags", "todo"));
    assert!(!is_checked(&form, "tags", "home"));

    // A new title, the same tags.
    let edit = format!("/notes/{id}/edit/");
    let r = post(
        &c,
        &app,
        &edit,
        &note_fields(&token, "Final", "done", &["work", "todo"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/notes/{id}/"));
    let detail = page(&c, &app, &format!("/notes/{id}/")).await;
    assert!(detail.contains("Final") && !detail.contains("Draft"));
    assert!(detail.contains("<span class=\"tag\">work</span>"));
    assert!(detail.contains("<span class=\"tag\">todo</span>"));

    // Other tags.
    let r = post(
        &c,
        &app,
        &edit,
        &note_fields(&token, "Final", "done", &["reading"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(listed(&page(&c, &app, "/notes/?tag=work").await).is_empty());
    assert_eq!(listed(&page(&c, &app, "/notes/?tag=reading").await), [id]);

    // No tags at all.
    let r = post(&c, &app, &edit, &note_fields(&token, "Final", "done", &[])).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(listed(&page(&c, &app, "/notes/?tag=reading").await).is_empty());
    assert_eq!(listed(&page(&c, &app, "/notes/").await), [id]);
}

#[tokio::test]
async fn validation_errors_keep_the_input_and_write_nothing() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "careless").await;
    let token = token_from(&c, &app, "/notes/new/").await;

    // No title.
    let r = post(
        &c,
        &app,
        "/notes/new/",
        &note_fields(&token, "  ", "keep this text", &["home"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "title").is_some());
    assert!(field_error(&html, "body").is_none());
    assert!(html.contains("keep this text</textarea>"));
    assert!(is_checked(&html, "tags", "home"));

    // Too long a title and too long a body, each reported next to its field.
    let title = "t".repeat(201);
    let body = "b".repeat(20_001);
    let r = post(
        &c,
        &app,
        "/notes/new/",
        &note_fields(&token, &title, &body, &[]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "title")
        .expect("title message")
        .contains("200"));
    assert!(field_error(&html, "body")
        .expect("body message")
        .contains("20000"));
    assert!(html.contains(&format!("value=\"{title}\"")));
    assert!(html.contains(&format!("{body}</textarea>")));

    // A tag outside the list.
    let r = post(
        &c,
        &app,
        "/notes/new/",
        &note_fields(&token, "Tagged", "x", &["work", "urgent"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "tags")
        .expect("tags message")
        .contains("urgent"));
    assert!(is_checked(&html, "tags", "work"));
    assert!(html.contains("value=\"Tagged\""));

    assert!(listed(&page(&c, &app, "/notes/").await).is_empty());

    // An invalid edit leaves the note as it was.
    let id = create(&c, &app, &token, "Original", &["todo"]).await;
    let r = post(
        &c,
        &app,
        &format!("/notes/{id}/edit/"),
        &note_fields(&token, "", "changed", &[]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("body").contains("changed</textarea>"));
    let detail = page(&c, &app, &format!("/notes/{id}/")).await;
    assert!(detail.contains("Original") && detail.contains("<span class=\"tag\">todo</span>"));
}

#[tokio::test]
async fn a_refused_csrf_post_shows_the_note_form_again_and_writes_nothing() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "forgetful").await;
    token_from(&c, &app, "/notes/new/").await;
    let r = post(
        &c,
        &app,
        "/notes/new/",
        &note_fields("not-a-token", "Kept title", "kept body", &["ideas"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = r.text().await.expect("body");
    assert!(html.contains("value=\"Kept title\""));
    assert!(html.contains("kept body</textarea>"));
    assert!(is_checked(&html, "tags", "ideas"));
    assert!(listed(&page(&c, &app, "/notes/").await).is_empty());
}

#[tokio::test]
async fn another_users_note_is_not_found_anywhere() {
    let app = TestApp::spawn(&[]);
    let alice = signup(&app, "alice").await;
    let bob = signup(&app, "bob").await;
    let token = token_from(&alice, &app, "/notes/new/").await;
    let id = create(&alice, &app, &token, "Alice's secret", &["home"]).await;
    let bob_token = token_from(&bob, &app, "/notes/new/").await;

    for path in [
        format!("/notes/{id}/"),
        format!("/notes/{id}/edit/"),
        format!("/notes/{id}/delete/"),
    ] {
        let r = get(&bob, &app, &path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert!(!r.text().await.expect("body").contains("Alice's secret"));
    }
    let edit = format!("/notes/{id}/edit/");
    let r = post(
        &bob,
        &app,
        &edit,
        &note_fields(&bob_token, "Bob was here", "", &[]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = post(&bob, &app, &edit, &note_fields(&bob_token, "", "", &[])).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "an invalid form too");
    let r = post(
        &bob,
        &app,
        &format!("/notes/{id}/delete/"),
        &[("csrfmiddlewaretoken", bob_token.as_str())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(listed(&page(&bob, &app, "/notes/").await).is_empty());

    // Still there, unchanged.
    let detail = page(&alice, &app, &format!("/notes/{id}/")).await;
    assert!(detail.contains("Alice&#x27;s secret") || detail.contains("Alice's secret"));
    assert!(!detail.contains("Bob was here"));

    // Ids that are not numbers name no note either.
    assert_eq!(
        get(&alice, &app, "/notes/abc/").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delete_asks_first_then_deletes() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "tidy").await;
    let token = token_from(&c, &app, "/notes/new/").await;
    let keep = create(&c, &app, &token, "Keep", &[]).await;
    let id = create(&c, &app, &token, "Throw away", &[]).await;

    let confirm = page(&c, &app, &format!("/notes/{id}/delete/")).await;
    assert!(confirm.contains("Throw away"));
    assert!(confirm.contains(&format!("action=\"/notes/{id}/delete/\"")));
    assert_eq!(
        listed(&page(&c, &app, "/notes/").await),
        [id, keep],
        "GET deletes nothing"
    );

    let token = common::csrf_token(&confirm);
    let r = post(
        &c,
        &app,
        &format!("/notes/{id}/delete/"),
        &[("csrfmiddlewaretoken", token.as_str())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes/");
    assert_eq!(
        get(&c, &app, &format!("/notes/{id}/")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(listed(&page(&c, &app, "/notes/").await), [keep]);
}

#[tokio::test]
async fn twenty_five_notes_make_two_pages_and_the_links_keep_the_filter() {
    let app = TestApp::spawn(&[]);
    let c = signup(&app, "prolific").await;
    let token = token_from(&c, &app, "/notes/new/").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        // The first three are untagged, so the filtered list differs from the full one.
        let tags: &[&str] = if i < 3 { &[] } else { &["work"] };
        ids.push(create(&c, &app, &token, &format!("Note {i}"), tags).await);
    }
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();

    let first = page(&c, &app, "/notes/").await;
    assert_eq!(listed(&first), newest_first[..20]);
    assert!(first.contains("href=\"/notes/?page=2\""));
    assert!(!first.contains("rel=\"prev\""));
    let second = page(&c, &app, "/notes/?page=2").await;
    assert_eq!(listed(&second), newest_first[20..]);
    assert!(second.contains("href=\"/notes/\""));
    assert!(!second.contains("rel=\"next\""));

    let first = page(&c, &app, "/notes/?tag=work").await;
    assert_eq!(listed(&first), newest_first[..20]);
    assert!(first.contains("href=\"/notes/?tag=work&amp;page=2\""));
    let second = page(&c, &app, "/notes/?tag=work&page=2").await;
    assert_eq!(listed(&second), newest_first[20..22]);
    assert!(second.contains("href=\"/notes/?tag=work\""));
    assert!(is_checked(&second, "tag", "work"));

    for bad in ["/notes/?page=3", "/notes/?page=0", "/notes/?page=two"] {
        assert_eq!(
            get(&c, &app, bad).await.status(),
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
}

/// The core flow with the models in PostgreSQL. The database is shared between runs, so the
/// accounts get fresh names and nothing assumes empty tables.
#[tokio::test]
async fn the_core_flow_works_on_postgresql() {
    let url = common::postgres_url();
    let app = TestApp::spawn(&[("PORTICO_DATABASE_URL", url.as_str())]);
    let owner = signup(&app, &unique("pg-owner")).await;
    let other = signup(&app, &unique("pg-other")).await;
    let token = token_from(&owner, &app, "/notes/new/").await;

    let a = create(&owner, &app, &token, "pg work", &["work", "reading"]).await;
    let b = create(&owner, &app, &token, "pg home", &["home"]).await;
    assert_eq!(listed(&page(&owner, &app, "/notes/").await), [b, a]);
    assert_eq!(listed(&page(&owner, &app, "/notes/?tag=work").await), [a]);
    assert_eq!(
        listed(&page(&owner, &app, "/notes/?tag=reading&tag=home").await),
        [b, a]
    );

    let r = post(
        &owner,
        &app,
        &format!("/notes/{a}/edit/"),
        &note_fields(&token, "pg work, edited", "new text", &["todo"]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let detail = page(&owner, &app, &format!("/notes/{a}/")).await;
    assert!(detail.contains("pg work, edited") && detail.contains("new text"));
    assert_eq!(listed(&page(&owner, &app, "/notes/?tag=todo").await), [a]);
    assert!(listed(&page(&owner, &app, "/notes/?tag=work").await).is_empty());

    assert_eq!(
        get(&other, &app, &format!("/notes/{a}/")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(listed(&page(&other, &app, "/notes/").await).is_empty());

    let r = post(
        &owner,
        &app,
        &format!("/notes/{b}/delete/"),
        &[("csrfmiddlewaretoken", token.as_str())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(listed(&page(&owner, &app, "/notes/").await), [a]);
}
