use axum::http::{header, StatusCode};
use bytes::Bytes;

use super::body::{collect_body, parse_body};
use super::*;

#[test]
fn repeated_keys_keep_every_value_in_order() {
    let q = QueryDict::parse("hobby=reading&x=1&hobby=music&hobby=travel").unwrap();
    assert_eq!(q.getlist("hobby"), ["reading", "music", "travel"]);
    assert_eq!(q.get("hobby"), Some("travel"));
    assert_eq!(q.getlist("nothing"), Vec::<&str>::new());
}

#[test]
fn plus_is_space_and_percent_decodes_utf8() {
    let q = QueryDict::parse("name=Ada+Lovelace&city=Z%C3%BCrich&plus=%2B").unwrap();
    assert_eq!(q.get("name"), Some("Ada Lovelace"));
    assert_eq!(q.get("city"), Some("Zürich"));
    assert_eq!(q.get("plus"), Some("+"));
}

#[test]
fn empty_values_and_bare_keys_are_present_but_empty() {
    let q = QueryDict::parse("a=&b&&c=3").unwrap();
    assert_eq!(q.get("a"), Some(""));
    assert_eq!(q.get("b"), Some(""));
    assert!(q.contains("b"));
    assert_eq!(q.len(), 3);
    assert!(QueryDict::parse("").unwrap().is_empty());
}

#[test]
fn a_value_may_contain_equals_signs() {
    let q = QueryDict::parse("token=abc==&t=a=b").unwrap();
    assert_eq!(q.get("token"), Some("abc=="));
    assert_eq!(q.get("t"), Some("a=b"));
}

#[test]
fn broken_escape_is_refused_naming_the_field() {
    let e = QueryDict::parse("ok=1&username=ab%zz").unwrap_err();
    assert_eq!(
        e,
        ParamsError::BadEscape {
            field: "username".into()
        }
    );
    assert!(e.to_string().contains("username"));
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    let e = QueryDict::parse("title=abc%4").unwrap_err();
    assert_eq!(
        e,
        ParamsError::BadEscape {
            field: "title".into()
        }
    );
    let e = QueryDict::parse("x=%").unwrap_err();
    assert_eq!(e, ParamsError::BadEscape { field: "x".into() });
}

#[test]
fn invalid_utf8_is_refused_naming_the_field() {
    let e = QueryDict::parse("bio=%FF%FE").unwrap_err();
    assert_eq!(
        e,
        ParamsError::BadUtf8 {
            field: "bio".into()
        }
    );
    let e = QueryDict::parse_bytes(b"raw=\xff").unwrap_err();
    assert_eq!(
        e,
        ParamsError::BadUtf8 {
            field: "raw".into()
        }
    );
}

#[test]
fn more_than_a_thousand_fields_is_refused() {
    let ok: String = (0..MAX_FIELDS).map(|i| format!("f{i}=1&")).collect();
    assert_eq!(QueryDict::parse(&ok).unwrap().len(), MAX_FIELDS);
    let too_many = format!("{ok}one=more");
    assert_eq!(
        QueryDict::parse(&too_many).unwrap_err(),
        ParamsError::TooManyFields { max: MAX_FIELDS }
    );
}

#[test]
fn params_prefers_the_body_and_lists_both() {
    let p = Params {
        query: QueryDict::parse("tag=a&next=/x").unwrap(),
        form: QueryDict::parse("tag=b&next=/y").unwrap(),
    };
    assert_eq!(p.get("next"), Some("/y"));
    assert_eq!(p.getlist("tag"), ["a", "b"]);
}

#[test]
fn typed_form_takes_one_or_many_values() {
    #[derive(serde::Deserialize)]
    struct F {
        title: String,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        remember: bool,
        page: Option<u32>,
    }
    let f: F = QueryDict::parse("title=a&title=b&tags=work&remember=on&page=3")
        .unwrap()
        .deserialize()
        .unwrap();
    assert_eq!(f.title, "b");
    assert_eq!(f.tags, ["work"]);
    assert!(f.remember);
    assert_eq!(f.page, Some(3));
    let f: F = QueryDict::parse("title=a").unwrap().deserialize().unwrap();
    assert!(f.tags.is_empty());
    assert!(!f.remember);
    assert!(QueryDict::parse("title=a&page=x")
        .unwrap()
        .deserialize::<F>()
        .is_err());
}

#[tokio::test]
async fn multipart_text_fields_are_read_and_files_skipped() {
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nada\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"hobby\"\r\n\r\nmusic\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\n\
                Content-Type: image/png\r\n\r\n\x01\x02\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"hobby\"\r\n\r\ntravel\r\n\
                --XyZ--\r\n";
    let mut headers = http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "multipart/form-data; boundary=XyZ".parse().unwrap(),
    );
    let q = parse_body(&headers, &Bytes::from(body)).await.unwrap();
    assert_eq!(q.get("username"), Some("ada"));
    assert_eq!(q.getlist("hobby"), ["music", "travel"]);
    assert!(!q.contains("avatar"));
}

#[tokio::test]
async fn malformed_multipart_is_a_clear_400() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "multipart/form-data; boundary=XyZ".parse().unwrap(),
    );
    let e = parse_body(&headers, &Bytes::from_static(b"--XyZ\r\ngarbage"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn body_over_the_limit_is_too_large() {
    let body = axum::body::Body::from(vec![b'a'; 100]);
    let e = collect_body(body, 10).await.unwrap_err();
    assert_eq!(e, ParamsError::TooLarge { limit: 10 });
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn a_form_that_does_not_fit_its_type_is_a_400_page_saying_why() {
    #[derive(Debug, serde::Deserialize)]
    struct F {
        #[allow(dead_code)]
        page: u32,
    }
    let e = QueryDict::parse("page=x")
        .unwrap()
        .deserialize::<F>()
        .unwrap_err();
    let rejection = FormRejection::Deserialize(e);
    assert_eq!(rejection.status(), StatusCode::BAD_REQUEST);
    let message = rejection.to_string();
    assert!(
        message.starts_with("The form could not be read: "),
        "{message}"
    );
    let resp = rejection.into_response();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = resp.extensions().get::<ErrorPage>().unwrap();
    assert_eq!(page.message, message);
}

#[test]
fn a_form_whose_parameters_are_unreadable_answers_as_the_params_error() {
    let e = ParamsError::TooLarge { limit: 10 };
    let rejection = FormRejection::from(e.clone());
    assert_eq!(rejection.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(rejection.to_string(), e.to_string());
    let resp = rejection.into_response();
    assert_eq!(
        resp.extensions().get::<ErrorPage>(),
        Some(&ErrorPage::new(e.status(), e.to_string()))
    );
}

#[test]
fn a_checkbox_reads_alike_typed_or_not() {
    #[derive(serde::Deserialize)]
    struct F {
        #[serde(default)]
        b: bool,
    }
    for (query, ticked) in [
        ("b=on", true),
        ("b=yes", true),
        ("b=1", true),
        ("b=", false),
        ("b=0", false),
        ("b=false", false),
        ("b=off", false),
        ("b=no", false),
        ("b=on&b=off", false),
        ("", false),
    ] {
        let q = QueryDict::parse(query).unwrap();
        assert_eq!(q.checked("b"), ticked, "{query}");
        assert_eq!(q.deserialize::<F>().unwrap().b, ticked, "{query}");
    }
}
