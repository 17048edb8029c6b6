//! The on-air overlay and the audit dashboard, loaded in headless Chromium
//! (Debian's `chromium`; `scripts/services.sh chromium` installs it) against
//! the real binary: what the pages show must be what the API says.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Results, Stack, call, candidate_id, create_election, election_id};
use serde_json::{Value, json};

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
    let css = page_css(&s, &app).await;
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

/// The pages' style sheet as served.
async fn page_css(s: &Stack, app: &Results) -> String {
    s.http
        .get(app.url("/pages/livevote.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The opening tag of the row of `candidate`.
fn row_of<'a>(dom: &'a str, candidate: &str) -> &'a str {
    tags_with(dom, &format!("data-candidate-id=\"{candidate}\""))[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_crowns_the_leader_by_votes_shows_ties_and_tells_cancelled_from_live() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    // Free text is shown as text: markup in a name or the title never runs.
    let markup = "<img src=x onerror=\"document.body.dataset.pwned='name'\">";
    let e = create_election(
        &s,
        &app,
        &["Ada", "Grace", "Linus", markup],
        true,
        json!({"title": "<script>document.body.dataset.pwned='title'</script>Final"}),
    )
    .await;
    let (id, eid) = (e["electionId"].as_str().unwrap().to_owned(), election_id(&e));
    let c: Vec<String> = (0..4).map(|i| candidate_id(&e, i).to_string()).collect();
    // The outsiders' final: three candidates at 25.3 %, one of them ahead by a single vote.
    let counts = [1260, 1320, 1320, 1321];
    s.set_live_counts(
        eid,
        &(0..4)
            .map(|i| (candidate_id(&e, i), counts[i]))
            .collect::<Vec<_>>(),
    )
    .await;
    let api = results(&s, &app, &id).await;
    let shown: Vec<String> = api["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{:.1}", t["percentage"].as_f64().unwrap()))
        .collect();
    assert_eq!(shown, ["24.1", "25.3", "25.3", "25.3"], "{api}");
    let units: i64 = shown
        .iter()
        .map(|p| (p.parse::<f64>().unwrap() * 10.0).round() as i64)
        .sum();
    assert_eq!(units, 1000, "the shown percentages add up to 100.0");

    let url = app.url(&format!("/onair/{id}"));
    let dom = dom_until(&url, Wait::Wall, "5,221 votes", |d| {
        body_attr(d, "data-total-votes") == Some("5221")
    })
    .await;
    assert_eq!(body_attr(&dom, "data-leaders"), Some("1"), "{dom}");
    assert_eq!(body_attr(&dom, "data-pwned"), None, "markup ran: {dom}");
    assert!(!dom.contains("<img src=\"x\""), "a name became an element: {dom}");
    assert!(
        dom.contains("&lt;img src=x onerror="),
        "the name is shown as text: {dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;"),
        "the title is shown as text: {dom}"
    );
    for (i, candidate) in c.iter().enumerate() {
        let row = row_of(&dom, candidate);
        let leads = i == 3;
        assert_eq!(
            attr(row, "data-leading"),
            Some(if leads { "true" } else { "false" }),
            "{row}"
        );
        assert_eq!(attr(row, "class").unwrap().contains("leading"), leads, "{row}");
    }
    let live_badge = tags_with(&dom, "id=\"badge\"")[0];
    assert_eq!(attr(live_badge, "class"), Some("badge active"));
    assert!(dom.contains(">LIVE<"));

    // A tie at the top is shown as a tie: both lead, both marked tied.
    s.set_live_counts(
        eid,
        &[
            (candidate_id(&e, 0), 10),
            (candidate_id(&e, 1), 12),
            (candidate_id(&e, 2), 12),
            (candidate_id(&e, 3), 3),
        ],
    )
    .await;
    let dom = dom_until(&url, Wait::Wall, "the tie", |d| {
        body_attr(d, "data-total-votes") == Some("37")
    })
    .await;
    assert_eq!(body_attr(&dom, "data-leaders"), Some("2"), "{dom}");
    for (i, candidate) in c.iter().enumerate() {
        let class = attr(row_of(&dom, candidate), "class").unwrap().to_owned();
        let tied = i == 1 || i == 2;
        assert_eq!(class.contains("leading"), tied, "{class}");
        assert_eq!(class.contains("tied"), tied, "{class}");
    }

    // Cancelled: its own badge, never the LIVE one.
    let cancelled = s
        .change_status(
            &app,
            &id,
            json!({"status": "CANCELLED", "reason": "technical fault in the studio"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let dom = dom_until(&url, Wait::Wall, "the cancellation", |d| {
        body_attr(d, "data-state") == Some("cancelled")
    })
    .await;
    let badge = tags_with(&dom, "id=\"badge\"")[0];
    assert_eq!(attr(badge, "class"), Some("badge cancelled"), "{badge}");
    assert!(dom.contains(">CANCELLED<") && !dom.contains(">LIVE<"), "{dom}");
    let css = page_css(&s, &app).await;
    let rule = |selector: &str| {
        css.lines()
            .find(|l| l.starts_with(selector))
            .unwrap_or_else(|| panic!("no {selector} rule"))
            .to_owned()
    };
    assert_ne!(
        rule(".onair .badge.cancelled {"),
        rule(".onair .badge.active {").replace("active", "cancelled"),
        "CANCELLED and LIVE look different"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_show_on_the_audit_page_and_no_result_is_final_while_one_is_unattributed() {
    let s = Stack::new().await;
    // No background reconciliation: only the test and the page look at the dead-letter queue.
    let app = s.start(&[("LIVEVOTE_RESULTS_RECONCILE_SECS", "0")]);
    let auditor = s.auditor_token();
    let closed = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let active = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let mut stored = Vec::new();
    for i in 0..3 {
        stored.push(
            s.accept(
                election_id(&closed),
                candidate_id(&closed, 0),
                &format!("auth0|c{i}"),
            )
            .await,
        );
    }
    let on_air = s
        .accept(election_id(&active), candidate_id(&active, 1), "auth0|a0")
        .await;
    s.persist(&stored).await;
    s.persist(std::slice::from_ref(&on_air)).await;
    let closed_id = closed["electionId"].as_str().unwrap().to_owned();
    let active_id = active["electionId"].as_str().unwrap().to_owned();
    let closing = s
        .change_status(&app, &closed_id, json!({"status": "CLOSED"}))
        .await;
    assert_eq!(closing.status, 200, "{}", closing.body);
    let reconciliation = |id: String| {
        let (s, app, auditor) = (&s, &app, auditor.clone());
        async move {
            call(
                &s.http,
                app,
                "GET",
                &format!("/api/v1/audit/elections/{id}/reconciliation"),
                Some(&auditor),
                None,
                &[],
            )
            .await
            .body
        }
    };
    // Before any dead letter: the closed election is final, the active one never is.
    let r = reconciliation(closed_id.clone()).await;
    assert_eq!(
        (r["verdict"].as_str(), r["allowsFinal"].as_bool()),
        (Some("balanced"), Some(true)),
        "{r}"
    );
    let r = reconciliation(active_id.clone()).await;
    assert_eq!(r["verdict"], "balanced", "{r}");
    assert_eq!(r["allowsFinal"], false, "an ACTIVE election is never final: {r}");
    crate::support::eventually("final results", Duration::from_secs(10), || async {
        (results(&s, &app, &closed_id).await["final"] == true).then_some(())
    })
    .await;

    // Three dead letters: one that does not decode, a vote of an election nobody
    // created, and a copy of one of the closed election's votes.
    s.dead_letter("{\"this is\": not a vote message").await;
    let mut stranger = stored[0].clone();
    stranger.vote.election_id = livevote_domain::ElectionId::generate();
    s.dead_letter(&livevote_sqs::message::encode(&[stranger])).await;
    s.dead_letter(&livevote_sqs::message::encode(&stored[1..2])).await;

    let r = reconciliation(closed_id.clone()).await;
    assert_eq!(r["deadLettered"], 1, "{r}");
    assert_eq!(r["deadLetterMessages"], 3, "{r}");
    assert_eq!(r["unattributedDeadLetters"], 1, "{r}");
    assert_eq!(r["allowsFinal"], false, "{r}");
    let r = reconciliation(active_id.clone()).await;
    assert_eq!(
        (r["deadLettered"].as_u64(), r["unattributedDeadLetters"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(r["allowsFinal"], false, "{r}");
    crate::support::eventually("final withdrawn", Duration::from_secs(10), || async {
        (results(&s, &app, &closed_id).await["final"] == false).then_some(())
    })
    .await;
    let page = call(
        &s.http,
        &app,
        "GET",
        "/api/v1/audit/reconciliation",
        Some(&auditor),
        None,
        &[],
    )
    .await
    .body;
    assert_eq!(
        (
            page["deadLetterMessages"].as_u64(),
            page["unattributedDeadLetters"].as_u64(),
            page["deadLetteredElsewhere"].as_u64()
        ),
        (Some(3), Some(1), Some(1)),
        "{page}"
    );

    let url = format!("{}#token={auditor}", app.url("/audit"));
    let dom = dom_until(&url, Wait::Virtual, "both elections", |d| {
        body_attr(d, "data-elections") == Some("2")
    })
    .await;
    assert_eq!(body_attr(&dom, "data-dead-letters"), Some("3"), "{dom}");
    assert_eq!(body_attr(&dom, "data-unattributed"), Some("1"), "{dom}");
    assert_eq!(body_attr(&dom, "data-alarm-state"), Some("warn"), "{dom}");
    assert!(!dom.contains("OK: no loss"), "{dom}");
    assert!(dom.contains("ATTENTION: 3 in the dead-letter queue"), "{dom}");
    let banner = &dom[dom.find("id=\"dlq\"").expect("the dead-letter banner")..];
    assert!(!tags_with(banner, "id=\"dlq\"")[0].contains("hidden"), "{banner}");
    assert!(banner.contains("1 unattributed"), "{banner}");
    assert!(
        banner.contains("1 votes of elections not listed here"),
        "{banner}"
    );
    assert_eq!(cell(&dom, &closed_id, "deadLettered"), "1");
    assert_eq!(cell(&dom, &closed_id, "allowsFinal"), "no");
    assert_eq!(cell(&dom, &active_id, "deadLettered"), "0");
    assert_eq!(cell(&dom, &active_id, "allowsFinal"), "no");
}
