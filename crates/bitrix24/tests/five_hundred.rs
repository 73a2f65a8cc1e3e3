//! Issue 5's proof: 500 notifications from an OAuth app through every fault the emulator can
//! inject, with the access token expiring mid-run. Each one must end delivered exactly once,
//! or be reported as outcome unknown; none lost, none silently duplicated. The accounting uses
//! the emulator's own state, not the client's word.

use std::collections::HashMap;
use std::time::Duration;

use bitrix24::{Client, Error, OAuthConfig, Pacer, RetryPolicy};
use bitrix24_emulator::{BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET, Config, Emulator, Plan};
use futures_util::StreamExt;
use serde_json::json;

const N: usize = 500;

#[derive(Debug, PartialEq)]
enum Fate {
    Delivered(u64),
    Unknown,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_notifications_through_faults_are_all_accounted_for() {
    let emu = Emulator::start(Config::default().plan(Plan::Unlimited))
        .await
        .unwrap();
    let issued = emu
        .issue_tokens(&json!({"user_id": 1}))
        .expect("tokens issued");
    let (access, refresh) = (
        issued["access_token"].as_str().unwrap(),
        issued["refresh_token"].as_str().unwrap(),
    );

    // Windows of faults over the run; the expired token lands in the middle.
    let m = "im.notify.personal.add";
    let rules = json!([
        {"method": m, "kind": "status", "status": 503, "error": "QUERY_LIMIT_EXCEEDED", "after": 20, "count": 25},
        {"method": m, "kind": "status", "status": 500, "error": "INTERNAL_SERVER_ERROR", "after": 80, "count": 25},
        {"method": m, "kind": "reset_before", "after": 140, "count": 25},
        {"method": m, "kind": "status", "status": 401, "error": "expired_token",
         "description": "The access token provided has expired", "after": 250, "count": 1},
        {"method": m, "kind": "reset_after", "after": 300, "count": 25},
        {"method": m, "kind": "status", "status": 502, "error": "BAD_GATEWAY", "after": 400, "count": 10}
    ]);
    emu.add_faults(&rules).expect("fault rules accepted");

    let oauth = OAuthConfig::new(BUILTIN_CLIENT_ID, BUILTIN_CLIENT_SECRET)
        .token_url(format!("{}/oauth/token/", emu.url()))
        .access_token(access, None)
        .refresh_token(refresh);
    let client = Client::builder(emu.url())
        .oauth(oauth)
        .pacer(Pacer::Off)
        .retry(RetryPolicy {
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();

    // Even rows carry a tag (a resend replaces the first copy), odd rows do not.
    let fates: Vec<(usize, Fate)> = futures_util::stream::iter(0..N)
        .map(|i| {
            let client = client.clone();
            async move {
                let mut add = client
                    .notify()
                    .personal(2 + (i % 5) as u64, format!("row {i}"));
                if i % 2 == 0 {
                    add = add.tag(format!("row-{i}"));
                }
                let fate = match add.send().await {
                    Ok(Some(id)) => Fate::Delivered(id),
                    Ok(None) => panic!("row {i}: the recipient exists"),
                    Err(Error::OutcomeUnknown { .. }) if i % 2 == 1 => Fate::Unknown,
                    Err(e) => panic!("row {i} was lost: {e}"),
                };
                (i, fate)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let stored = emu.notifications();
    let mut copies: HashMap<String, Vec<u64>> = HashMap::new();
    for n in &stored {
        copies.entry(n.message.clone()).or_default().push(n.id);
    }
    let (mut delivered, mut unknown) = (0, 0);
    for (i, fate) in &fates {
        let ids = copies.get(&format!("row {i}")).cloned().unwrap_or_default();
        match fate {
            Fate::Delivered(id) => {
                assert_eq!(
                    ids,
                    vec![*id],
                    "row {i}: delivered exactly once, as the id says"
                );
                delivered += 1;
            }
            Fate::Unknown => {
                assert!(
                    ids.len() <= 1,
                    "row {i}: reported unknown, and not duplicated either"
                );
                unknown += 1;
            }
        }
    }
    assert_eq!(delivered + unknown, N, "every row has a fate");
    assert_eq!(stored.len(), copies.values().map(Vec::len).sum::<usize>());
    assert!(
        copies.values().all(|ids| ids.len() == 1),
        "no notification exists twice"
    );
    // Every tagged row was delivered: the retries were safe.
    assert!(
        fates
            .iter()
            .filter(|(i, _)| i % 2 == 0)
            .all(|(_, f)| matches!(f, Fate::Delivered(_)))
    );
    // The faults really happened, and the token was refreshed once.
    assert!(
        unknown > 0,
        "untagged rows hit by 5xx or dropped answers are reported"
    );
    let refreshes = emu.refreshes();
    assert_eq!(refreshes.succeeded, 1);
    assert_eq!(refreshes.failed, 0);
    eprintln!("500 rows: {delivered} delivered once, {unknown} reported as outcome unknown");
}
