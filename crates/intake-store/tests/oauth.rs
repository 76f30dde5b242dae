//! OAuth state in the store, each story run on SQLite and on PostgreSQL: sealed tokens and
//! flows (no plaintext in rows or on disk), single-flight refresh across two nodes (two pools),
//! re-authorization, single-use flows and once-only credential warnings.

use std::sync::Arc;

use intake_core::token::{TokenIdentity, TokenSet};
use intake_store::{CryptoError, Keyring, PendingFlow, Store, StoreError, TokenStatus};
use intake_testkit::TestDb;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, Row};

const I: &str = "m365-contoso";
const M: &str = "help@contoso.example";

fn tokens(at: &str, rt: Option<&str>, expires_at: i64) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(at),
        refresh_token: rt.map(SecretString::from),
        expires_at,
        scopes: vec![
            "offline_access".into(),
            "https://outlook.office.com/IMAP.AccessAsUser.All".into(),
        ],
        id_token: Some(SecretString::from("IDT-SECRET-789")),
    }
}

fn identity() -> TokenIdentity {
    TokenIdentity {
        username: Some("jane.identity@contoso.example".into()),
        tenant: Some("tenant-1111".into()),
        scopes: vec!["IMAP.AccessAsUser.All".into()],
        ..Default::default()
    }
}

fn keys() -> Arc<Keyring> {
    Arc::new(Keyring::generate().unwrap())
}

fn at(t: &TokenSet) -> &str {
    t.access_token.expose_secret()
}

fn rt(t: &TokenSet) -> Option<&str> {
    t.refresh_token.as_ref().map(|s| s.expose_secret())
}

async fn version(store: &Store, keys: &Keyring) -> i64 {
    store
        .tokens("")
        .load_token(keys, I, M)
        .await
        .unwrap()
        .unwrap()
        .version
}

/// Every column of every row of `table`, as bytes (text, blobs and integers alike). Panics on a
/// column it cannot read, so nothing is left out.
async fn dump(store: &Store, table: &str) -> Vec<u8> {
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {table}")))
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in &rows {
        for i in 0..row.len() {
            if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                out.extend(v.unwrap_or_default().into_bytes());
            } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                out.extend(v.unwrap_or_default());
            } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                out.extend(v.unwrap_or_default().to_string().into_bytes());
            } else {
                panic!("column {i} of {table} is neither text, bytes nor integer");
            }
            out.push(b'|');
        }
        out.push(b'\n');
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const SECRETS: [&str; 5] = [
    "AT-SECRET-123",
    "RT-SECRET-456",
    "IDT-SECRET-789",
    "PKCE-VERIFIER-SECRET-abc",
    "AT-SECRET-ROTATED-321",
];

async fn round_trip_and_no_plaintext(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let keys = keys();
    assert!(
        store
            .tokens("")
            .load_token(&keys, I, M)
            .await
            .unwrap()
            .is_none()
    );
    let v1 = store
        .tokens("")
        .save_token(
            &keys,
            I,
            M,
            &tokens("AT-SECRET-123", Some("RT-SECRET-456"), 5_000),
            &identity(),
        )
        .await
        .unwrap();
    let got = store
        .tokens("")
        .load_token(&keys, I, M)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at(&got.tokens), "AT-SECRET-123", "{}", db.kind);
    assert_eq!(rt(&got.tokens), Some("RT-SECRET-456"));
    assert_eq!(
        got.tokens.id_token.as_ref().unwrap().expose_secret(),
        "IDT-SECRET-789"
    );
    assert_eq!(got.tokens.scopes, tokens("", None, 0).scopes);
    assert_eq!((got.expires_at, got.tokens.expires_at), (5_000, 5_000));
    assert_eq!(got.identity, identity());
    assert_eq!(got.status, TokenStatus::Valid);
    assert_eq!(got.version, v1);
    // Debug output of what the store hands back does not show secrets.
    let dbg = format!("{got:?}");
    assert!(SECRETS.iter().all(|s| !dbg.contains(s)), "{dbg}");

    // A refresh, so the row is rewritten once, and a pending flow.
    assert!(
        store
            .tokens("")
            .try_begin_refresh(I, M, "n1", 60, 100)
            .await
            .unwrap()
    );
    assert!(
        store
            .tokens("")
            .finish_refresh(
                &keys,
                I,
                M,
                "n1",
                &tokens("AT-SECRET-ROTATED-321", None, 9_000),
                v1
            )
            .await
            .unwrap()
    );
    let flow = PendingFlow {
        state: "state-visible-1".into(),
        integration: I.into(),
        mailbox: M.into(),
        redirect_uri: "https://intake.example/oauth/callback".into(),
        pkce_verifier: SecretString::from("PKCE-VERIFIER-SECRET-abc"),
        expires_at: 10_000,
    };
    store.save_flow(&keys, &flow).await.unwrap();

    let rows = [
        dump(&store, "oauth_tokens").await,
        dump(&store, "oauth_flows").await,
    ]
    .concat();
    // The dump does see the row's non-secret content and the key id, so a plaintext secret
    // would show up too.
    for visible in [
        M,
        "jane.identity@contoso.example",
        "state-visible-1",
        keys.current_key_id(),
    ] {
        assert!(
            contains(&rows, visible),
            "{}: {visible} not in dump",
            db.kind
        );
    }
    for s in SECRETS {
        assert!(!contains(&rows, s), "{}: {s} stored in the clear", db.kind);
    }

    if db.kind == "sqlite" {
        store.close().await;
        let path = db.url.strip_prefix("sqlite://").unwrap();
        let dir = std::path::Path::new(path).parent().unwrap();
        let mut disk = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("intake.db") {
                disk.extend(std::fs::read(e.path()).unwrap());
            }
        }
        assert!(contains(&disk, "jane.identity@contoso.example"));
        assert!(contains(&disk, "state-visible-1"));
        for s in SECRETS {
            assert!(!contains(&disk, s), "{s} in the SQLite files");
        }
    }
}

#[tokio::test]
async fn tokens_round_trip_and_never_stored_in_clear() {
    for db in TestDb::each().await {
        round_trip_and_no_plaintext(&db).await;
    }
}

async fn ciphertext_bound_to_row_and_key(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let old = Keyring::generate().unwrap();
    store
        .tokens("")
        .save_token(&old, I, M, &tokens("AT-1", Some("RT-1"), 1), &identity())
        .await
        .unwrap();
    store
        .tokens("")
        .save_token(
            &old,
            I,
            "other@contoso.example",
            &tokens("AT-2", None, 1),
            &identity(),
        )
        .await
        .unwrap();
    // Copy this mailbox's sealed token into the other mailbox's row.
    let r = sqlx::query(
        "SELECT key_id, nonce, ciphertext FROM oauth_tokens WHERE integration = $1 AND mailbox = $2",
    )
    .bind(I)
    .bind(M)
    .fetch_one(store.pool())
    .await
    .unwrap();
    let (kid, nonce, ct): (String, Vec<u8>, Vec<u8>) = (
        r.try_get("key_id").unwrap(),
        r.try_get("nonce").unwrap(),
        r.try_get("ciphertext").unwrap(),
    );
    sqlx::query(
        "UPDATE oauth_tokens SET key_id = $1, nonce = $2, ciphertext = $3
         WHERE integration = $4 AND mailbox = $5",
    )
    .bind(kid)
    .bind(nonce)
    .bind(ct)
    .bind(I)
    .bind("other@contoso.example")
    .execute(store.pool())
    .await
    .unwrap();
    let err = store
        .tokens("")
        .load_token(&old, I, "other@contoso.example")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::Open)),
        "{}: {err:?}",
        db.kind
    );
    assert!(!err.to_string().contains("AT-1"));

    // Another key cannot open it; a rotated keyring that lists the old key can, and a refresh
    // re-seals with the new current key.
    let new_only = Keyring::generate().unwrap();
    let err = store
        .tokens("")
        .load_token(&new_only, I, M)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::UnknownKey(_))),
        "{err:?}"
    );
    // Keyrings do not export keys: use two known ones for the rotation.
    let (old_b64, new_b64) = (
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=",
    );
    let old = Keyring::from_base64(old_b64, &[]).unwrap();
    store
        .tokens("")
        .save_token(&old, I, M, &tokens("AT-1", Some("RT-1"), 1), &identity())
        .await
        .unwrap();
    let rotated = Keyring::from_base64(new_b64, &[old_b64]).unwrap();
    let got = store
        .tokens("")
        .load_token(&rotated, I, M)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at(&got.tokens), "AT-1");
    assert!(
        store
            .tokens("")
            .try_begin_refresh(I, M, "n", 60, 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .tokens("")
            .finish_refresh(&rotated, I, M, "n", &tokens("AT-3", None, 2), got.version)
            .await
            .unwrap()
    );
    let kid: String = sqlx::query_scalar(
        "SELECT key_id FROM oauth_tokens WHERE integration = $1 AND mailbox = $2",
    )
    .bind(I)
    .bind(M)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(kid, rotated.current_key_id());
    let new_only = Keyring::from_base64(new_b64, &[]).unwrap();
    let got = store
        .tokens("")
        .load_token(&new_only, I, M)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((at(&got.tokens), rt(&got.tokens)), ("AT-3", Some("RT-1")));
}

#[tokio::test]
async fn ciphertext_is_bound_to_its_row_and_key() {
    for db in TestDb::each().await {
        ciphertext_bound_to_row_and_key(&db).await;
    }
}

async fn single_flight(db: &TestDb) {
    // Two nodes: two pools on the same database.
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let keys = keys();
    a.tokens("")
        .save_token(&keys, I, M, &tokens("AT-0", Some("RT-0"), 1), &identity())
        .await
        .unwrap();
    let rounds = 30;
    let now = 1_000_000;
    let mut wins = [0u32; 2];
    for round in 0..rounds {
        let mut set = tokio::task::JoinSet::new();
        for (n, store) in [&a, &b].into_iter().enumerate() {
            for task in 0..4 {
                let store = store.clone();
                let owner = format!("node{n}-task{task}");
                set.spawn(async move {
                    let won = store
                        .tokens("")
                        .try_begin_refresh(I, M, &owner, 60, now)
                        .await
                        .unwrap();
                    won.then_some((n, owner))
                });
            }
        }
        let winners: Vec<(usize, String)> = set.join_all().await.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "{} round {round}: {winners:?}", db.kind);
        let (n, owner) = &winners[0];
        wins[*n] += 1;
        // The winner refreshes; a loser's finish is refused; the lease is then free again.
        let node = if *n == 0 { &a } else { &b };
        let other = if *n == 0 { &b } else { &a };
        let v = version(node, &keys).await;
        let new = tokens(&format!("AT-{}", round + 1), None, 2);
        assert!(
            !other
                .tokens("")
                .finish_refresh(&keys, I, M, "node9-task9", &new, v)
                .await
                .unwrap()
        );
        assert!(
            node.tokens("")
                .finish_refresh(&keys, I, M, owner, &new, v)
                .await
                .unwrap()
        );
    }
    let got = b.tokens("").load_token(&keys, I, M).await.unwrap().unwrap();
    assert_eq!(at(&got.tokens), format!("AT-{rounds}"));
    assert_eq!(rt(&got.tokens), Some("RT-0"));
    assert_eq!(got.version, 1 + rounds as i64);
    eprintln!("{}: wins per node {wins:?}", db.kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_is_single_flight_across_nodes() {
    for db in TestDb::each().await {
        single_flight(&db).await;
    }
}

async fn lease_expiry_and_takeover(db: &TestDb) {
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let keys = keys();
    let v = a
        .tokens("")
        .save_token(&keys, I, M, &tokens("AT-0", Some("RT-0"), 1), &identity())
        .await
        .unwrap();
    // Missing token: nobody refreshes it.
    assert!(
        !a.tokens("")
            .try_begin_refresh(I, "nobody", "a", 60, 1000)
            .await
            .unwrap()
    );

    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 1000)
            .await
            .unwrap()
    );
    // The holder may renew; others wait while the lease runs (also at its last second).
    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 1010)
            .await
            .unwrap()
    );
    assert!(
        !b.tokens("")
            .try_begin_refresh(I, M, "b", 60, 1030)
            .await
            .unwrap()
    );
    assert!(
        !b.tokens("")
            .try_begin_refresh(I, M, "b", 60, 1070)
            .await
            .unwrap()
    );
    // Past expiry (renewed to 1070): b takes over.
    assert!(
        b.tokens("")
            .try_begin_refresh(I, M, "b", 60, 1071)
            .await
            .unwrap()
    );
    assert!(
        !a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 1072)
            .await
            .unwrap()
    );
    // The stale owner's result is refused and changes nothing.
    assert!(
        !a.tokens("")
            .finish_refresh(
                &keys,
                I,
                M,
                "a",
                &tokens("AT-STALE", Some("RT-STALE"), 5),
                v
            )
            .await
            .unwrap()
    );
    let got = b.tokens("").load_token(&keys, I, M).await.unwrap().unwrap();
    assert_eq!(
        (at(&got.tokens), rt(&got.tokens), got.version),
        ("AT-0", Some("RT-0"), v),
        "{}",
        db.kind
    );
    // The new owner, but with an outdated version (someone wrote since it loaded): refused.
    assert!(
        !b.tokens("")
            .finish_refresh(&keys, I, M, "b", &tokens("AT-B", None, 5), v - 1)
            .await
            .unwrap()
    );
    assert!(
        b.tokens("")
            .finish_refresh(&keys, I, M, "b", &tokens("AT-B", Some("RT-B"), 5), v)
            .await
            .unwrap()
    );
    let got = a.tokens("").load_token(&keys, I, M).await.unwrap().unwrap();
    assert_eq!(
        (
            at(&got.tokens),
            rt(&got.tokens),
            got.version,
            got.expires_at
        ),
        ("AT-B", Some("RT-B"), v + 1, 5)
    );
    // Finishing twice does not work: the lease is gone, and anyone may take it at once (b's
    // lease would have run until 1131).
    assert!(
        !b.tokens("")
            .finish_refresh(&keys, I, M, "b", &tokens("AT-B2", None, 6), v + 1)
            .await
            .unwrap()
    );
    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 1080)
            .await
            .unwrap()
    );
    assert!(a.tokens("").abandon_refresh(I, M, "a").await.unwrap());

    // Abandoning releases at once, and only for the holder.
    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 600, 2000)
            .await
            .unwrap()
    );
    assert!(!b.tokens("").abandon_refresh(I, M, "b").await.unwrap());
    assert!(
        !b.tokens("")
            .try_begin_refresh(I, M, "b", 600, 2001)
            .await
            .unwrap()
    );
    assert!(a.tokens("").abandon_refresh(I, M, "a").await.unwrap());
    assert!(
        b.tokens("")
            .try_begin_refresh(I, M, "b", 600, 2002)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn expired_lease_is_taken_over_and_stale_owner_cannot_write() {
    for db in TestDb::each().await {
        lease_expiry_and_takeover(&db).await;
    }
}

async fn refresh_token_kept(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let keys = keys();
    let v = store
        .tokens("")
        .save_token(
            &keys,
            I,
            M,
            &tokens("AT-0", Some("RT-KEEP"), 1),
            &identity(),
        )
        .await
        .unwrap();
    assert!(
        store
            .tokens("")
            .try_begin_refresh(I, M, "n", 60, 10)
            .await
            .unwrap()
    );
    let mut new = tokens("AT-1", None, 2);
    new.id_token = None;
    new.scopes = Vec::new();
    assert!(
        store
            .tokens("")
            .finish_refresh(&keys, I, M, "n", &new, v)
            .await
            .unwrap()
    );
    let got = store
        .tokens("")
        .load_token(&keys, I, M)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (at(&got.tokens), rt(&got.tokens)),
        ("AT-1", Some("RT-KEEP")),
        "{}",
        db.kind
    );
    assert_eq!(
        got.tokens.id_token.as_ref().map(|s| s.expose_secret()),
        Some("IDT-SECRET-789"),
        "id token kept too"
    );
    assert_eq!(got.tokens.scopes, tokens("", None, 0).scopes, "scopes kept");
    // A rotated refresh token replaces the old one.
    assert!(
        store
            .tokens("")
            .try_begin_refresh(I, M, "n", 60, 20)
            .await
            .unwrap()
    );
    let mut new = tokens("AT-2", Some("RT-ROTATED"), 3);
    new.scopes = vec!["only.this".into()];
    new.id_token = None;
    assert!(
        store
            .tokens("")
            .finish_refresh(&keys, I, M, "n", &new, got.version)
            .await
            .unwrap()
    );
    let got = store
        .tokens("")
        .load_token(&keys, I, M)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (at(&got.tokens), rt(&got.tokens)),
        ("AT-2", Some("RT-ROTATED"))
    );
    assert_eq!(got.tokens.scopes, vec!["only.this".to_string()]);
    assert_eq!(
        got.tokens.id_token.as_ref().map(|s| s.expose_secret()),
        Some("IDT-SECRET-789"),
        "id token kept when only the refresh token rotates"
    );
    // A new id token replaces the old one.
    assert!(
        store
            .tokens("")
            .try_begin_refresh(I, M, "n", 60, 30)
            .await
            .unwrap()
    );
    let mut new = tokens("AT-3", None, 4);
    new.id_token = Some(SecretString::from("IDT-NEW"));
    assert!(
        store
            .tokens("")
            .finish_refresh(&keys, I, M, "n", &new, got.version)
            .await
            .unwrap()
    );
    let got = store
        .tokens("")
        .load_token(&keys, I, M)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            rt(&got.tokens),
            got.tokens.id_token.as_ref().map(|s| s.expose_secret())
        ),
        (Some("RT-ROTATED"), Some("IDT-NEW"))
    );
}

#[tokio::test]
async fn finish_refresh_without_refresh_token_keeps_the_old_one() {
    for db in TestDb::each().await {
        refresh_token_kept(&db).await;
    }
}

async fn reauthorization(db: &TestDb) {
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let keys = keys();
    let v = a
        .tokens("")
        .save_token(&keys, I, M, &tokens("AT-0", Some("RT-0"), 1), &identity())
        .await
        .unwrap();
    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 10)
            .await
            .unwrap()
    );
    assert!(
        a.tokens("")
            .mark_needs_reauthorization(I, M, "AADSTS70008: refresh token expired")
            .await
            .unwrap()
    );
    assert!(
        !a.tokens("")
            .mark_needs_reauthorization(I, "nobody", "x")
            .await
            .unwrap()
    );
    let got = b.tokens("").load_token(&keys, I, M).await.unwrap().unwrap();
    assert_eq!(
        got.status,
        TokenStatus::NeedsReauthorization {
            reason: "AADSTS70008: refresh token expired".into()
        },
        "{}",
        db.kind
    );
    // Marking released the lease and the token is no longer refreshed by anyone.
    assert!(
        !a.tokens("")
            .finish_refresh(&keys, I, M, "a", &tokens("AT-X", None, 2), v)
            .await
            .unwrap()
    );
    assert!(
        !b.tokens("")
            .try_begin_refresh(I, M, "b", 60, 11)
            .await
            .unwrap()
    );
    assert!(
        !a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 12)
            .await
            .unwrap()
    );

    // Re-authorization (on node b) brings it back.
    let v2 = b
        .tokens("")
        .save_token(
            &keys,
            I,
            M,
            &tokens("AT-NEW", Some("RT-NEW"), 3),
            &identity(),
        )
        .await
        .unwrap();
    assert_eq!(v2, v + 1);
    let got = a.tokens("").load_token(&keys, I, M).await.unwrap().unwrap();
    assert_eq!(got.status, TokenStatus::Valid);
    assert_eq!(at(&got.tokens), "AT-NEW");
    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 13)
            .await
            .unwrap()
    );

    // fail_refresh marks only for the lease holder, so a re-authorization that raced with a
    // failing refresh is not undone.
    assert!(
        !b.tokens("")
            .fail_refresh(I, M, "b", "invalid_grant")
            .await
            .unwrap()
    );
    b.tokens("")
        .save_token(
            &keys,
            I,
            M,
            &tokens("AT-RACE", Some("RT-RACE"), 4),
            &identity(),
        )
        .await
        .unwrap();
    assert!(
        !a.tokens("")
            .fail_refresh(I, M, "a", "invalid_grant")
            .await
            .unwrap()
    );
    assert_eq!(
        b.tokens("")
            .load_token(&keys, I, M)
            .await
            .unwrap()
            .unwrap()
            .status,
        TokenStatus::Valid
    );
    assert!(
        a.tokens("")
            .try_begin_refresh(I, M, "a", 60, 14)
            .await
            .unwrap()
    );
    assert!(
        a.tokens("")
            .fail_refresh(I, M, "a", "invalid_grant")
            .await
            .unwrap()
    );
    assert_eq!(
        b.tokens("")
            .load_token(&keys, I, M)
            .await
            .unwrap()
            .unwrap()
            .status,
        TokenStatus::NeedsReauthorization {
            reason: "invalid_grant".into()
        }
    );
}

#[tokio::test]
async fn needs_reauthorization_is_shared_and_cleared_by_save() {
    for db in TestDb::each().await {
        reauthorization(&db).await;
    }
}

fn flow(state: &str, expires_at: i64) -> PendingFlow {
    PendingFlow {
        state: state.into(),
        integration: I.into(),
        mailbox: M.into(),
        redirect_uri: "https://b.intake.example/oauth/callback".into(),
        pkce_verifier: SecretString::from(format!("verifier-of-{state}")),
        expires_at,
    }
}

async fn flows(db: &TestDb) {
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let keys = keys();
    a.save_flow(&keys, &flow("s1", 1_000)).await.unwrap();
    assert!(
        a.save_flow(&keys, &flow("s1", 1_000)).await.is_err(),
        "a state is used once"
    );
    // The callback lands on node b.
    let got = b.take_flow(&keys, "s1", 500).await.unwrap().expect("flow");
    assert_eq!(got.state, "s1", "{}", db.kind);
    assert_eq!(got.pkce_verifier.expose_secret(), "verifier-of-s1");
    assert_eq!(
        (
            got.integration.as_str(),
            got.mailbox.as_str(),
            got.redirect_uri.as_str(),
            got.expires_at
        ),
        (I, M, "https://b.intake.example/oauth/callback", 1_000)
    );
    // Only once, on any node.
    assert!(b.take_flow(&keys, "s1", 500).await.unwrap().is_none());
    assert!(a.take_flow(&keys, "s1", 500).await.unwrap().is_none());
    assert!(a.take_flow(&keys, "never", 500).await.unwrap().is_none());

    // Concurrent callbacks with the same state: exactly one gets the flow.
    for n in 0..10 {
        let state = format!("race{n}");
        a.save_flow(&keys, &flow(&state, 1_000)).await.unwrap();
        let (ra, rb) = tokio::join!(
            a.take_flow(&keys, &state, 500),
            b.take_flow(&keys, &state, 500)
        );
        let got = [ra.unwrap(), rb.unwrap()];
        assert_eq!(got.iter().flatten().count(), 1, "{} {state}", db.kind);
    }

    // Expired flows are not returned (and are gone afterwards).
    a.save_flow(&keys, &flow("old", 1_000)).await.unwrap();
    assert!(b.take_flow(&keys, "old", 1_000).await.unwrap().is_none());
    assert!(b.take_flow(&keys, "old", 10).await.unwrap().is_none());
    a.save_flow(&keys, &flow("edge", 1_000)).await.unwrap();
    assert!(b.take_flow(&keys, "edge", 999).await.unwrap().is_some());

    // Purging removes expired flows only.
    for (s, e) in [("p1", 100), ("p2", 200), ("p3", 300)] {
        a.save_flow(&keys, &flow(s, e)).await.unwrap();
    }
    assert_eq!(b.purge_expired_flows(200).await.unwrap(), 2);
    assert_eq!(b.purge_expired_flows(200).await.unwrap(), 0);
    assert!(a.take_flow(&keys, "p3", 250).await.unwrap().is_some());

    // A flow's verifier is bound to its row: opening with another keyring fails loudly.
    a.save_flow(&keys, &flow("k", 1_000)).await.unwrap();
    let err = b
        .take_flow(&Keyring::generate().unwrap(), "k", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::UnknownKey(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn flows_complete_on_any_node_once_and_expire() {
    for db in TestDb::each().await {
        flows(&db).await;
    }
}

async fn warnings(db: &TestDb) {
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    let exp = 1_800_000_000;
    assert!(
        a.record_credential_warning(I, "30d", exp, 1).await.unwrap(),
        "{}",
        db.kind
    );
    assert!(!a.record_credential_warning(I, "30d", exp, 2).await.unwrap());
    assert!(!b.record_credential_warning(I, "30d", exp, 3).await.unwrap());
    assert!(b.record_credential_warning(I, "14d", exp, 4).await.unwrap());
    // A renewed credential (new expiry) is warned about again; so is another integration.
    assert!(
        b.record_credential_warning(I, "30d", exp + 86_400 * 365, 5)
            .await
            .unwrap()
    );
    assert!(
        a.record_credential_warning("google-x", "30d", exp, 6)
            .await
            .unwrap()
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credential_warnings")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(n, 4);
    let warned_at: i64 = sqlx::query_scalar(
        "SELECT warned_at FROM credential_warnings WHERE integration = $1 AND stage = '30d' AND expires_at = $2",
    )
    .bind(I)
    .bind(exp)
    .fetch_one(a.pool())
    .await
    .unwrap();
    assert_eq!(warned_at, 1, "the first record stays");
}

#[tokio::test]
async fn credential_warnings_are_recorded_once() {
    for db in TestDb::each().await {
        warnings(&db).await;
    }
}

async fn tokens_per_resource(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let k = keys();
    let exo = store.tokens("exo");
    let graph = store.tokens("graph");
    exo.save_token(
        &k,
        I,
        M,
        &tokens("AT-EXO", Some("RT-EXO"), 2_000_000_000),
        &identity(),
    )
    .await
    .unwrap();
    assert!(
        graph.load_token(&k, I, M).await.unwrap().is_none(),
        "an EXO token is not a Graph token"
    );
    assert!(
        store
            .tokens("")
            .load_token(&k, I, M)
            .await
            .unwrap()
            .is_none(),
        "nor the single-resource row"
    );
    graph
        .save_token(
            &k,
            I,
            M,
            &tokens("AT-GRAPH", Some("RT-GRAPH"), 2_000_000_000),
            &identity(),
        )
        .await
        .unwrap();
    assert_eq!(
        at(&exo.load_token(&k, I, M).await.unwrap().unwrap().tokens),
        "AT-EXO"
    );
    assert_eq!(
        at(&graph.load_token(&k, I, M).await.unwrap().unwrap().tokens),
        "AT-GRAPH"
    );
    let all = store.tokens_of_mailbox(&k, I, M).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|(r, t)| (r.as_str(), at(&t.tokens)))
            .collect::<Vec<_>>(),
        [("exo", "AT-EXO"), ("graph", "AT-GRAPH")]
    );
    // Leases, refreshes and re-authorization marks stay on their own row.
    assert!(
        exo.try_begin_refresh(I, M, "node-a", 60, 100)
            .await
            .unwrap()
    );
    assert!(
        graph
            .try_begin_refresh(I, M, "node-b", 60, 100)
            .await
            .unwrap()
    );
    let v = graph.load_token(&k, I, M).await.unwrap().unwrap().version;
    assert!(
        graph
            .finish_refresh(
                &k,
                I,
                M,
                "node-b",
                &tokens("AT-GRAPH-2", None, 2_000_000_100),
                v
            )
            .await
            .unwrap()
    );
    assert!(
        exo.fail_refresh(I, M, "node-a", "invalid_grant")
            .await
            .unwrap()
    );
    let g = graph.load_token(&k, I, M).await.unwrap().unwrap();
    assert_eq!(
        (at(&g.tokens), rt(&g.tokens)),
        ("AT-GRAPH-2", Some("RT-GRAPH"))
    );
    assert_eq!(g.status, TokenStatus::Valid);
    assert!(matches!(
        exo.load_token(&k, I, M).await.unwrap().unwrap().status,
        TokenStatus::NeedsReauthorization { .. }
    ));
    store.close().await;
}

/// One access token has one audience: a mailbox read over IMAP and over Graph keeps a token
/// per resource, and nothing done to one touches the other.
#[tokio::test]
async fn tokens_are_kept_per_resource() {
    for db in TestDb::each().await {
        tokens_per_resource(&db).await;
    }
}
