//! The Graph mail source against a wiremock fake of Graph on loopback.

use std::time::{Duration, Instant};

use intake_core::{Cloud, RootCause, microsoft_endpoints};
use intake_mail::http::HttpOptions;
use intake_mail::source::PostAction;
use intake_mail::source::graph::{GraphError, GraphSettings, GraphSource, Next};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{
    body_json, header, header_regex, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-access-token";
const DELTA: &str = "/v1.0/me/mailFolders/inbox/messages/delta";

fn settings(root: &str, mailbox: Option<&str>, page_size: u32) -> GraphSettings {
    GraphSettings {
        graph_url: root.to_string(),
        mailbox: mailbox.map(str::to_string),
        folder: "inbox".to_string(),
        page_size,
        http: HttpOptions {
            timeout: Some(Duration::from_secs(10)),
            ..HttpOptions::default()
        },
        max_message_bytes: None,
    }
}

fn source(server: &MockServer, mailbox: Option<&str>) -> GraphSource {
    GraphSource::new(
        settings(&server.uri(), mailbox, 2),
        SecretString::from(TOKEN.to_string()),
    )
    .expect("settings are valid")
}

fn msg(id: &str) -> serde_json::Value {
    json!({ "id": id, "isRead": false, "receivedDateTime": "2025-05-01T10:00:00Z" })
}

fn removed(id: &str) -> serde_json::Value {
    json!({ "id": id, "@removed": { "reason": "deleted" } })
}

fn page(values: Vec<serde_json::Value>, link_kind: &str, link: String) -> ResponseTemplate {
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "value": values,
    });
    body[link_kind] = json!(link);
    ResponseTemplate::new(200).set_body_json(body)
}

fn graph_error(status: u16, code: &str, message: &str, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2025-05-01T10:00:00",
                "request-id": request_id,
                "client-request-id": "c0ffee00-0000-4000-8000-000000000001"
            }
        }
    }))
}

/// Three pages (first request, two nextLinks) ending in a deltaLink.
async fn mount_three_pages(server: &MockServer) {
    let uri = server.uri();
    Mock::given(method("GET"))
        .and(path(DELTA))
        .and(query_param("$select", "id,isRead,receivedDateTime"))
        .and(query_param_is_missing("$skiptoken"))
        .and(query_param_is_missing("$deltatoken"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header_regex(
            "prefer",
            "^odata.maxpagesize=2, IdType=\"ImmutableId\"$",
        ))
        .respond_with(page(
            vec![msg("m1"), msg("m2")],
            "@odata.nextLink",
            format!("{uri}{DELTA}?$skiptoken=p2"),
        ))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .and(query_param("$skiptoken", "p2"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header_regex(
            "prefer",
            "^odata.maxpagesize=2, IdType=\"ImmutableId\"$",
        ))
        .respond_with(page(
            vec![msg("m3"), removed("gone1")],
            "@odata.nextLink",
            format!("{uri}{DELTA}?$skiptoken=p3"),
        ))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .and(query_param("$skiptoken", "p3"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(page(
            vec![msg("m4")],
            "@odata.deltaLink",
            format!("{uri}{DELTA}?$deltatoken=d1"),
        ))
        .expect(1)
        .mount(server)
        .await;
}

/// Run a whole delta round from `checkpoint`: all ids and the final deltaLink.
async fn round(
    g: &mut GraphSource,
    checkpoint: Option<String>,
) -> Result<(Vec<Vec<String>>, String), GraphError> {
    let mut cursor = checkpoint;
    let mut pages = Vec::new();
    for _ in 0..10 {
        let p = g.delta(cursor.as_deref()).await?;
        pages.push(p.ids);
        match p.next {
            Next::More(link) => cursor = Some(link),
            Next::Done(delta) => return Ok((pages, delta)),
        }
    }
    panic!("delta did not finish in 10 pages");
}

#[tokio::test]
async fn delta_pages_through_three_pages_to_a_delta_link() {
    let server = MockServer::start().await;
    mount_three_pages(&server).await;
    let mut g = source(&server, None);

    let first = g.delta(None).await.unwrap();
    assert_eq!(first.ids, ["m1", "m2"]);
    assert_eq!(
        first.next,
        Next::More(format!("{}{DELTA}?$skiptoken=p2", server.uri()))
    );
    let Next::More(link) = first.next else {
        unreachable!()
    };
    let second = g.delta(Some(&link)).await.unwrap();
    assert_eq!(second.ids, ["m3"], "@removed entries are skipped");
    let Next::More(link) = second.next else {
        panic!("expected a nextLink, got {:?}", second.next)
    };
    let third = g.delta(Some(&link)).await.unwrap();
    assert_eq!(third.ids, ["m4"]);
    assert_eq!(
        third.next,
        Next::Done(format!("{}{DELTA}?$deltatoken=d1", server.uri()))
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn second_delta_from_the_stored_delta_link_returns_only_new_ids() {
    let server = MockServer::start().await;
    mount_three_pages(&server).await;
    let uri = server.uri();
    Mock::given(method("GET"))
        .and(path(DELTA))
        .and(query_param("$deltatoken", "d1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header_regex(
            "prefer",
            "^odata.maxpagesize=2, IdType=\"ImmutableId\"$",
        ))
        .respond_with(page(
            vec![msg("m5"), removed("m1")],
            "@odata.deltaLink",
            format!("{uri}{DELTA}?$deltatoken=d2"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, None);

    let (pages, stored) = round(&mut g, None).await.unwrap();
    assert_eq!(pages.concat(), ["m1", "m2", "m3", "m4"]);

    let (pages, next_checkpoint) = round(&mut g, Some(stored)).await.unwrap();
    assert_eq!(pages, [vec!["m5".to_string()]]);
    assert_eq!(next_checkpoint, format!("{uri}{DELTA}?$deltatoken=d2"));
}

#[tokio::test]
async fn an_expired_delta_link_asks_for_a_resync() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .and(query_param("$deltatoken", "old"))
        .respond_with(graph_error(
            410,
            "syncStateNotFound",
            "The sync state generation is not found.",
            "aaaa0000-0000-4000-8000-000000000410",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    let e = g
        .delta(Some(&format!("{}{DELTA}?$deltatoken=old", server.uri())))
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Resync { .. }), "{e:?}");
    assert!(e.to_string().contains("without a checkpoint"), "{e}");

    // A bare 410 without Graph's envelope means the same.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(ResponseTemplate::new(410))
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    let e = g
        .delta(Some(&format!("{}{DELTA}?$deltatoken=old", server.uri())))
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Resync { .. }), "{e:?}");
}

#[tokio::test]
async fn throttling_honours_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(
            graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                "bbbb0000-0000-4000-8000-000000000429",
            )
            .insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(page(
            vec![msg("m1")],
            "@odata.deltaLink",
            format!("{}{DELTA}?$deltatoken=d1", server.uri()),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    let started = Instant::now();
    let p = g.delta(None).await.unwrap();
    assert_eq!(p.ids, ["m1"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "one throttled request and one retry"
    );
}

#[tokio::test]
async fn throttling_gives_up_after_the_bounded_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    let started = Instant::now();
    let e = g.delta(None).await.unwrap_err();
    // Retry-After: 0 is honoured (the fallback backoff would wait 1 + 2 + 4 s).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match e {
        GraphError::Throttled {
            status,
            attempts,
            retry_after,
            ..
        } => {
            assert_eq!(status, 503);
            assert_eq!(attempts, 4);
            assert_eq!(retry_after, Some(Duration::ZERO));
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_shared_mailbox_uses_the_users_path() {
    let server = MockServer::start().await;
    let shared = "/v1.0/users/shared@contoso.example/mailFolders/inbox/messages/delta";
    Mock::given(method("GET"))
        .and(path(shared))
        .and(query_param("$select", "id,isRead,receivedDateTime"))
        .respond_with(page(
            vec![msg("s1")],
            "@odata.deltaLink",
            format!("{}{shared}?$deltatoken=s", server.uri()),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, Some("shared@contoso.example"));
    let p = g.delta(None).await.unwrap();
    assert_eq!(p.ids, ["s1"]);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].url.path(), shared);
}

#[tokio::test]
async fn value_returns_the_exact_mime_bytes() {
    let server = MockServer::start().await;
    // Bytes a text round trip would damage: CRLF, a bare CR, 8-bit and invalid UTF-8.
    let mime: Vec<u8> = b"From: a@contoso.example\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\
        Content-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\r\x80 end\r\n"
        .to_vec();
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/AAMkAD-1_x=/$value"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(mime.clone(), "text/plain")
                .insert_header("request-id", "cccc"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    assert_eq!(g.fetch_mime("AAMkAD-1_x=").await.unwrap(), mime);
}

#[tokio::test]
async fn post_actions_send_the_documented_requests() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/v1.0/users/shared@contoso.example/messages/m1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "isRead": true })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "id": "m1", "isRead": true })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/users/shared@contoso.example/messages/m2/move"))
        .and(body_json(json!({ "destinationId": "archive" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "m2-new" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1.0/users/shared@contoso.example/messages/m3"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // Already gone (moved or deleted by an earlier attempt): counts as done.
    Mock::given(method("DELETE"))
        .and(path("/v1.0/users/shared@contoso.example/messages/m4"))
        .respond_with(graph_error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
            "dddd",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, Some("shared@contoso.example"));
    g.acknowledge("m1", &PostAction::MarkRead).await.unwrap();
    g.acknowledge("m2", &PostAction::Move("Archive".into()))
        .await
        .unwrap();
    g.acknowledge("m3", &PostAction::Delete).await.unwrap();
    g.acknowledge("m4", &PostAction::Delete).await.unwrap();

    // A display name as the destination is refused before any request (RC5).
    let e = g
        .acknowledge("m5", &PostAction::Move("Erledigt".into()))
        .await
        .unwrap_err();
    assert_eq!(e.root_cause(), Some(RootCause::Rc5), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_token_for_the_wrong_audience_is_g1_with_the_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
            "eeee0000-0000-4000-8000-000000000401",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    let e = g.delta(None).await.unwrap_err();
    assert_eq!(e.root_cause(), Some(RootCause::G1), "{e:?}");
    assert!(!e.is_token_expired());
    let api = e.api().expect("Graph's envelope is kept");
    assert_eq!(api.status, 401);
    assert_eq!(api.code, "InvalidAuthenticationToken");
    assert_eq!(
        api.message,
        "Access token validation failure. Invalid audience."
    );
    assert_eq!(
        api.request_id.as_deref(),
        Some("eeee0000-0000-4000-8000-000000000401")
    );
    let text = e.to_string();
    assert!(text.contains("Invalid audience"), "{text}");
    assert!(
        text.contains("eeee0000-0000-4000-8000-000000000401"),
        "{text}"
    );
    assert!(text.contains("G1"), "{text}");
    assert!(
        text.contains(RootCause::G1.fix()),
        "the fix is named: {text}"
    );
    assert!(!text.contains(TOKEN) && !format!("{e:?}").contains(TOKEN));
    assert!(!format!("{g:?}").contains(TOKEN));
}

#[tokio::test]
async fn licence_and_access_errors_name_their_root_cause() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/v1.0/users/nolicence@contoso.example/messages/m1/$value",
        ))
        .respond_with(graph_error(
            404,
            "MailboxNotEnabledForRESTAPI",
            "REST API is not yet supported for this mailbox.",
            "ffff",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/v1.0/users/shared@contoso.example/messages/m1/$value",
        ))
        .respond_with(graph_error(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
            "abcd",
        ))
        .mount(&server)
        .await;
    let mut g = source(&server, Some("nolicence@contoso.example"));
    let e = g.fetch_mime("m1").await.unwrap_err();
    assert_eq!(e.root_cause(), Some(RootCause::Rc4), "{e}");
    let mut g = source(&server, Some("shared@contoso.example"));
    let e = g.fetch_mime("m1").await.unwrap_err();
    assert_eq!(e.root_cause(), Some(RootCause::Rc3), "{e}");
    assert_eq!(e.api().unwrap().request_id.as_deref(), Some("abcd"));
}

#[tokio::test]
async fn links_to_another_host_never_receive_the_token() {
    let server = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(page(
            vec![msg("m1")],
            "@odata.nextLink",
            format!("{}{DELTA}?$skiptoken=p2", other.uri()),
        ))
        .mount(&server)
        .await;
    let mut g = source(&server, None);
    let e = g.delta(None).await.unwrap_err();
    assert!(matches!(e, GraphError::Protocol(_)), "{e:?}");

    // A checkpoint stored for another Graph root (cloud changed): start over.
    let e = g
        .delta(Some(&format!("{}{DELTA}?$deltatoken=d1", other.uri())))
        .await
        .unwrap_err();
    assert!(matches!(e, GraphError::Resync { .. }), "{e:?}");
    assert!(other.received_requests().await.unwrap().is_empty());
}

#[test]
fn graph_roots_of_government_clouds_come_from_the_preset() {
    for (cloud, root) in [
        (Cloud::GccHigh, "https://graph.microsoft.us"),
        (Cloud::Dod, "https://dod-graph.microsoft.us"),
        (Cloud::Worldwide, "https://graph.microsoft.com"),
    ] {
        let graph_url = microsoft_endpoints(cloud, "contoso.example")
            .graph_url
            .expect("Microsoft clouds have a Graph root");
        assert_eq!(graph_url, cloud.graph_root());
        let g = GraphSource::new(
            settings(&graph_url, Some("shared@contoso.example"), 50),
            SecretString::from(TOKEN.to_string()),
        )
        .unwrap();
        assert_eq!(
            g.mailbox_url(),
            format!("{root}/v1.0/users/shared@contoso.example"),
            "{cloud}"
        );
        let me = GraphSource::new(
            settings(&graph_url, None, 50),
            SecretString::from(TOKEN.to_string()),
        )
        .unwrap();
        assert_eq!(me.mailbox_url(), format!("{root}/v1.0/me"), "{cloud}");
    }
}

/// Defect 5 on Graph when no size was declared (e.g. a deltaLink stored before the listing
/// expanded PidTagMessageSize): a `$value` larger than the limit + 1 MiB is abandoned and the message returned oversized with its headers from
/// `internetMessageHeaders`; a message gone (404) is left out; any other failure is an error.
#[tokio::test]
async fn an_oversized_message_comes_back_as_headers_and_a_vanished_one_is_left_out() {
    use intake_mail::source::{Listed, MailSource};
    let server = MockServer::start().await;
    let big = vec![b'x'; 3 * 1024 * 1024];
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/big/$value"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "text/plain"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/big"))
        .and(query_param("$select", "internetMessageHeaders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "internetMessageHeaders": [
                {"name": "From", "value": "Jane <jane@contoso.example>"},
                {"name": "Subject", "value": "huge\r\nInjected: no"},
                {"name": "Message-ID", "value": "<big@contoso.example>"}
            ]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/gone/$value"))
        .respond_with(graph_error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
            "g1",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/small/$value"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            b"From: a@contoso.example\r\n\r\nhi\r\n".to_vec(),
            "text/plain",
        ))
        .mount(&server)
        .await;
    let mut s = settings(&server.uri(), None, 2);
    s.max_message_bytes = Some(1024 * 1024);
    let mut g = GraphSource::new(s, SecretString::from(TOKEN.to_string())).unwrap();
    let item = |id: &str| Listed {
        key: id.into(),
        identity: GraphSource::identity(id),
        size: None,
    };
    let got = g
        .fetch(&[item("small"), item("gone"), item("big")])
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "the vanished message is left out");
    assert_eq!(got[0].raw, b"From: a@contoso.example\r\n\r\nhi\r\n");
    assert!(got[0].oversized.is_none());
    assert_eq!(
        got[1].raw,
        b"From: Jane <jane@contoso.example>\r\nSubject: huge  Injected: no\r\n\
Message-ID: <big@contoso.example>\r\n\r\n"
    );
    let o = got[1].oversized.unwrap();
    assert_eq!(o.limit, 1024 * 1024);
    assert!(o.size > o.limit, "{o:?}");

    // Anything but 404 is an error, never a silent gap.
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/denied/$value"))
        .respond_with(graph_error(
            403,
            "ErrorAccessDenied",
            "Access is denied.",
            "g2",
        ))
        .mount(&server)
        .await;
    assert!(g.fetch(&[item("denied")]).await.is_err());
}

fn sized(id: &str, size: u64) -> serde_json::Value {
    let mut m = msg(id);
    m["singleValueExtendedProperties"] =
        json!([{ "id": "Integer 0xe08", "value": size.to_string() }]);
    m
}

/// Defect 5 on Graph with sizes before download: the delta request expands PidTagMessageSize
/// (`Integer 0x0E08`), the listing carries each message's size, and a message declared larger
/// than the limit is quarantined from its `internetMessageHeaders` without its MIME `$value`
/// ever being requested; a message within the limit is downloaded as usual.
#[tokio::test]
async fn a_message_declared_oversized_is_quarantined_from_headers_without_downloading() {
    use intake_mail::source::{MailSource, Start};
    let server = MockServer::start().await;
    let uri = server.uri();
    let limit: u64 = 1024 * 1024;
    Mock::given(method("GET"))
        .and(path(DELTA))
        .and(query_param("$select", "id,isRead,receivedDateTime"))
        .and(query_param(
            "$expand",
            "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')",
        ))
        .respond_with(page(
            vec![
                sized("small", 31),
                sized("big", 40 * 1024 * 1024),
                msg("nosize"),
            ],
            "@odata.deltaLink",
            format!("{uri}{DELTA}?$deltatoken=d1"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // The oversized message's body must never be requested.
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/big/$value"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(vec![b'x'; 64], "text/plain"))
        .expect(0)
        .named("MIME $value of the oversized message")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/messages/big"))
        .and(query_param("$select", "internetMessageHeaders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "internetMessageHeaders": [
                {"name": "From", "value": "Jane <jane@contoso.example>"},
                {"name": "Subject", "value": "the quarterly video"},
                {"name": "Message-ID", "value": "<big@contoso.example>"}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    for id in ["small", "nosize"] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/me/messages/{id}/$value")))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                b"From: a@contoso.example\r\n\r\nhi\r\n".to_vec(),
                "text/plain",
            ))
            .expect(1)
            .mount(&server)
            .await;
    }
    let mut s = settings(&uri, None, 50);
    s.max_message_bytes = Some(limit);
    let mut g = GraphSource::new(s, SecretString::from(TOKEN.to_string())).unwrap();

    let listing = g.list(None, Start::All, 50).await.unwrap();
    let sizes: Vec<_> = listing
        .items
        .iter()
        .map(|l| (l.key.as_str(), l.size))
        .collect();
    assert_eq!(
        sizes,
        [
            ("small", Some(31)),
            ("big", Some(40 * 1024 * 1024)),
            ("nosize", None)
        ]
    );
    assert_eq!(
        listing.checkpoint,
        Some(format!("{uri}{DELTA}?$deltatoken=d1"))
    );

    let got = g.fetch(&listing.items).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got[0].oversized.is_none() && got[2].oversized.is_none());
    assert_eq!(got[0].raw, b"From: a@contoso.example\r\n\r\nhi\r\n");
    assert_eq!(
        got[1].raw,
        b"From: Jane <jane@contoso.example>\r\nSubject: the quarterly video\r\n\
Message-ID: <big@contoso.example>\r\n\r\n"
    );
    let o = got[1].oversized.expect("declared oversized");
    assert_eq!((o.size, o.limit), (40 * 1024 * 1024, limit));

    let requested: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(
        !requested
            .iter()
            .any(|p| p == "/v1.0/me/messages/big/$value"),
        "the oversized message's MIME was requested: {requested:?}"
    );
    server.verify().await;
}
