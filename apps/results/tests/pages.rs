//! The on-air overlay and the audit dashboard, loaded in headless Chromium
//! (Debian's `chromium`; `scripts/services.sh chromium` installs it) against
//! the real binary: what the pages show must be what the API says.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Results, Stack, call, candidate_id, create_election, election_id};

fn chromium() -> String {
    let bin = std::env::var("LIVEVOTE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} not found: install Debian's chromium (scripts/services.sh chromium) or set LIVEVOTE_CHROMIUM"
    );
    bin
}

/// One Chromium at a time: two browsers on a 2-core machine slow each
/// other down, and the overlay's dump waits a fixed wall-clock time.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long Chromium lets a page run before dumping its DOM.
#[derive(Clone, Copy)]
enum Wait {
    /// Virtual time: timers run and network requests are waited for. Not
    /// for pages holding a stream open (virtual time would never advance).
    Virtual,
    /// Wall time, for the stream-fed overlay.
    Wall,
}

/// The page's DOM after its scripts ran (headless Chromium's --dump-dom).
fn dump_dom(url: &str, wait: Wait) -> String {
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let profile = std::env::temp_dir().join(format!("lv-chromium-{}", uuid::Uuid::new_v4().simple()));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(match wait {
            Wait::Virtual => "--virtual-time-budget=3000",
            Wait::Wall => "--timeout=5000",
        })
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    if let Err(error) = std::fs::remove_dir_all(&profile) {
        eprintln!("could not remove {}: {error}", profile.display());
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Loads `url` until `ready` accepts its DOM (the page renders asynchronously).
async fn dom_until(url: &str, wait: Wait, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let url = url.to_owned();
        let dom = tokio::task::spawn_blocking(move || dump_dom(&url, wait))
            .await
            .unwrap();
        if ready(&dom) {
            return dom;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the page never showed {what}; last DOM:\n{dom}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The value of attribute `name` in the opening tag `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// Opening tags that contain `marker`.
fn tags_with<'a>(dom: &'a str, marker: &str) -> Vec<&'a str> {
    let mut tags = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(marker) {
        let open = rest[..i].rfind('<').unwrap_or(0);
        let close = rest[i..].find('>').map_or(rest.len(), |c| i + c);
        tags.push(&rest[open..=close.min(rest.len() - 1)]);
        rest = &rest[close.min(rest.len() - 1) + 1..];
    }
    tags
}

fn body_attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    tags_with(dom, "<body").first().and_then(|t| attr(t, name))
}

/// The text of the element with `data-field="field"` inside `row`'s `<tr>`.
fn cell(dom: &str, election: &str, field: &str) -> String {
    let start = dom
        .find(&format!("data-election-id=\"{election}\""))
        .expect("a row for the election");
    let row = &dom[start..start + dom[start..].find("</tr>").expect("row end")];
    let key = format!("data-field=\"{field}\">");
    let at = row.find(&key).expect("the cell") + key.len();
    row[at..at + row[at..].find('<').unwrap()].to_owned()
}

async fn results(s: &Stack, app: &Results, id: &str) -> Value {
    call(
        &s.http,
        app,
        "GET",
        &format!("/api/v1/results/{id}"),
        None,
        None,
        &[],
    )
    .await
    .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_air_overlay_shows_what_the_api_says_live_embargoed_and_final() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    let admin = s.admin_token();
    let e = create_election(&s, &app, &["Ada", "Grace", "Linus"], true, json!({})).await;
    let (id, eid) = (e["electionId"].as_str().unwrap().to_owned(), election_id(&e));
    let mut votes = Vec::new();
    for (i, c) in [0, 0, 1].into_iter().enumerate() {
        votes.push(s.accept(eid, candidate_id(&e, c), &format!("auth0|tv-{i}")).await);
    }
    let url = app.url(&format!("/onair/{id}"));

    // Live: one bar per candidate, votes and percentages as the API has them.
    let dom = dom_until(&url, Wait::Wall, "3 votes", |d| {
        body_attr(d, "data-total-votes") == Some("3")
    })
    .await;
    assert_eq!(body_attr(&dom, "data-state"), Some("active"));
    assert!(dom.contains("class=\"onair\""));
    let api = results(&s, &app, &id).await;
    let rows = tags_with(&dom, "data-candidate-id=");
    assert_eq!(rows.len(), 3, "{dom}");
    for (row, want) in rows.iter().zip(api["totals"].as_array().unwrap()) {
        assert_eq!(attr(row, "data-candidate-id"), want["candidateId"].as_str());
        assert_eq!(attr(row, "data-votes"), Some(want["votes"].to_string().as_str()));
        let pct = format!("{:.1}", want["percentage"].as_f64().unwrap());
        assert_eq!(attr(row, "data-percentage"), Some(pct.as_str()));
        // The bar is as wide as the percentage.
        let bar = &dom[dom.find(row).unwrap()..];
        let bar = tags_with(bar, "class=\"bar\"")[0];
        assert!(
            attr(bar, "style")
                .is_some_and(|st| st.contains(&format!("width: {}%", want["percentage"].as_f64().unwrap()))),
            "{bar}"
        );
    }
    assert!(dom.contains(">Ada<"), "names are shown");
    let css = s
        .http
        .get(app.url("/pages/livevote.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        css.contains("background: transparent"),
        "the overlay keys over video"
    );

    // Embargoed: no bars, no figures.
    let visibility = format!("/api/v1/admin/elections/{id}/visibility");
    call(
        &s.http,
        &app,
        "PUT",
        &visibility,
        Some(&admin),
        Some(json!({"resultsVisibility": "HIDDEN"})),
        &[],
    )
    .await;
    let dom = dom_until(&url, Wait::Wall, "the embargo", |d| {
        body_attr(d, "data-state") == Some("embargoed")
    })
    .await;
    assert!(tags_with(&dom, "data-candidate-id=").is_empty(), "{dom}");
    assert!(dom.contains(">EMBARGOED<"));
    call(
        &s.http,
        &app,
        "PUT",
        &visibility,
        Some(&admin),
        Some(json!({"resultsVisibility": "LIVE"})),
        &[],
    )
    .await;

    // Closed and stored: FINAL, with the persisted counts.
    call(
        &s.http,
        &app,
        "PATCH",
        &format!("/api/v1/admin/elections/{id}/status"),
        Some(&admin),
        Some(json!({"status": "CLOSED"})),
        &[],
    )
    .await;
    s.persist(&votes).await;
    let dom = dom_until(&url, Wait::Wall, "final results", |d| {
        body_attr(d, "data-final") == Some("true")
    })
    .await;
    assert!(dom.contains(">FINAL<"), "{dom}");
    let api = results(&s, &app, &id).await;
    assert_eq!(api["final"], true);
    let rows = tags_with(&dom, "data-candidate-id=");
    for (row, want) in rows.iter().zip(api["totals"].as_array().unwrap()) {
        assert_eq!(attr(row, "data-votes"), Some(want["votes"].to_string().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_dashboard_shows_every_reconciliation_and_raises_the_alarm_on_loss() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    let (admin, auditor) = (s.admin_token(), s.auditor_token());
    // One election fully stored (balanced), one whose accepted votes never arrived (lost).
    let good = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let bad = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let mut stored = Vec::new();
    for i in 0..4 {
        stored.push(
            s.accept(
                election_id(&good),
                candidate_id(&good, i % 2),
                &format!("auth0|g{i}"),
            )
            .await,
        );
    }
    s.persist(&stored).await;
    for i in 0..2 {
        s.accept(election_id(&bad), candidate_id(&bad, 0), &format!("auth0|b{i}"))
            .await;
    }
    for e in [&good, &bad] {
        let id = e["electionId"].as_str().unwrap();
        call(
            &s.http,
            &app,
            "PATCH",
            &format!("/api/v1/admin/elections/{id}/status"),
            Some(&admin),
            Some(json!({"status": "CLOSED"})),
            &[],
        )
        .await;
    }

    // Without a token the page asks for one and shows nothing.
    let dom = dom_until(&app.url("/audit"), Wait::Virtual, "the token form", |d| {
        d.contains("id=\"login\"") && !d.contains("<form id=\"login\" hidden")
    })
    .await;
    assert!(tags_with(&dom, "data-election-id=").is_empty());

    let url = format!("{}#token={auditor}", app.url("/audit"));
    let dom = dom_until(&url, Wait::Virtual, "both elections", |d| {
        body_attr(d, "data-elections") == Some("2")
    })
    .await;
    assert_eq!(
        body_attr(&dom, "data-alarm"),
        Some("true"),
        "a loss raises the alarm"
    );
    assert!(dom.contains("ALARM"));
    for e in [&good, &bad] {
        let id = e["electionId"].as_str().unwrap();
        let api = call(
            &s.http,
            &app,
            "GET",
            &format!("/api/v1/audit/elections/{id}/reconciliation"),
            Some(&auditor),
            None,
            &[],
        )
        .await
        .body;
        for (field, key) in [
            ("accepted", "accepted"),
            ("persisted", "persisted"),
            ("conflicts", "conflicts"),
            ("inFlight", "inFlight"),
            ("difference", "liveVsPersistedDifference"),
        ] {
            assert_eq!(cell(&dom, id, field), api[key].to_string(), "{field} of {id}");
        }
        assert_eq!(cell(&dom, id, "verdict"), api["verdictText"].as_str().unwrap());
        let row = tags_with(&dom, &format!("data-election-id=\"{id}\""))[0];
        assert_eq!(attr(row, "data-verdict"), api["verdict"].as_str());
    }
    assert_eq!(
        cell(&dom, good["electionId"].as_str().unwrap(), "verdict"),
        "balanced"
    );
    assert_eq!(
        cell(&dom, bad["electionId"].as_str().unwrap(), "verdict"),
        "lost 2"
    );
}
