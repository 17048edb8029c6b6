//! The on-air overlay and the audit dashboard in a real browser: headless
//! Chromium driven over WebDriver (`livevote_testkit::browser`), against
//! the real binary. The tests wait for elements to appear in the live page
//! and read what it renders: what the pages show must be what the API says.

use std::time::Duration;

use crate::support::{Results, Stack, call, candidate_id, create_election, election_id};
use livevote_testkit::browser::Browser;
use serde_json::{Value, json};

/// The text of the cell `field` in the audit table's row of `election`.
async fn cell(browser: &Browser, election: &str, field: &str) -> String {
    browser
        .text(&format!(
            "tr[data-election-id='{election}'] [data-field='{field}']"
        ))
        .await
}

/// How the badge looks on screen: its computed background colour and border style.
async fn badge_look(browser: &Browser) -> (String, String) {
    (
        browser.style("#badge", "background-color").await,
        browser.style("#badge", "border-top-style").await,
    )
}

/// Attribute `name` of the page's `<body>`, where the pages mirror their state.
async fn body(browser: &Browser, name: &str) -> Option<String> {
    browser.attr("body", name).await
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
    let browser = Browser::start().await;
    browser.open(&url).await;

    // Live: one bar per candidate, votes and percentages as the API has them.
    browser.wait_for("body[data-total-votes='3']", "3 votes").await;
    assert_eq!(body(&browser, "data-state").await.as_deref(), Some("active"));
    assert_eq!(body(&browser, "class").await.as_deref(), Some("onair"));
    let api = results(&s, &app, &id).await;
    let rows = browser.find_all("[data-candidate-id]").await;
    assert_eq!(
        rows.len(),
        3,
        "{}",
        browser.find("body").await.html(true).await.unwrap()
    );
    for (row, want) in rows.iter().zip(api["totals"].as_array().unwrap()) {
        let candidate = row.attr("data-candidate-id").await.unwrap();
        assert_eq!(candidate.as_deref(), want["candidateId"].as_str());
        assert_eq!(
            row.attr("data-votes").await.unwrap(),
            Some(want["votes"].to_string())
        );
        let pct = format!("{:.1}", want["percentage"].as_f64().unwrap());
        assert_eq!(row.attr("data-percentage").await.unwrap(), Some(pct));
        // The bar is as wide as the percentage.
        let style = browser
            .attr(
                &format!("[data-candidate-id='{}'] .bar", candidate.unwrap()),
                "style",
            )
            .await
            .unwrap_or_default();
        assert!(
            style.contains(&format!("width: {}%", want["percentage"].as_f64().unwrap())),
            "{style}"
        );
    }
    assert_eq!(
        browser.text("[data-candidate-id] .name").await,
        "Ada",
        "names are shown"
    );
    assert_eq!(
        browser.style("body", "background-color").await,
        "rgba(0, 0, 0, 0)",
        "the overlay keys over video"
    );

    // Embargoed: no bars, no figures, the notice shown.
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
    browser
        .wait_for("body[data-state='embargoed']", "the embargo")
        .await;
    assert!(browser.find_all("[data-candidate-id]").await.is_empty());
    assert_eq!(browser.text("#badge").await, "EMBARGOED");
    assert!(browser.find("#embargo").await.is_displayed().await.unwrap());
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
    browser.wait_for("body[data-final='true']", "final results").await;
    assert_eq!(browser.text("#badge").await, "FINAL");
    let api = results(&s, &app, &id).await;
    assert_eq!(api["final"], true);
    let rows = browser.find_all("[data-candidate-id]").await;
    assert_eq!(rows.len(), 3);
    for (row, want) in rows.iter().zip(api["totals"].as_array().unwrap()) {
        assert_eq!(
            row.attr("data-votes").await.unwrap(),
            Some(want["votes"].to_string())
        );
    }
    browser.close().await;
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
    let browser = Browser::start().await;
    browser.open(&app.url("/audit")).await;
    let login = browser
        .wait_for("form#login:not([hidden])", "the token form")
        .await;
    assert!(login.is_displayed().await.unwrap());
    assert!(browser.find_all("tr[data-election-id]").await.is_empty());

    // A fresh load (not a jump within the page) with the token in the fragment.
    browser.open("about:blank").await;
    browser
        .open(&format!("{}#token={auditor}", app.url("/audit")))
        .await;
    browser
        .wait_for("body[data-elections='2']", "both elections")
        .await;
    assert_eq!(
        body(&browser, "data-alarm").await.as_deref(),
        Some("true"),
        "a loss raises the alarm"
    );
    assert!(browser.text("#alarm").await.starts_with("ALARM"));
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
            assert_eq!(
                cell(&browser, id, field).await,
                api[key].to_string(),
                "{field} of {id}"
            );
        }
        assert_eq!(
            cell(&browser, id, "verdict").await,
            api["verdictText"].as_str().unwrap()
        );
        assert_eq!(
            browser
                .attr(&format!("tr[data-election-id='{id}']"), "data-verdict")
                .await
                .as_deref(),
            api["verdict"].as_str()
        );
    }
    assert_eq!(
        cell(&browser, good["electionId"].as_str().unwrap(), "verdict").await,
        "balanced"
    );
    assert_eq!(
        cell(&browser, bad["electionId"].as_str().unwrap(), "verdict").await,
        "lost 2"
    );
    browser.close().await;
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
    let browser = Browser::start().await;
    browser.open(&url).await;
    browser
        .wait_for("body[data-total-votes='5221']", "5,221 votes")
        .await;
    assert_eq!(body(&browser, "data-leaders").await.as_deref(), Some("1"));
    assert_eq!(body(&browser, "data-pwned").await, None, "markup ran");
    assert!(
        browser.find_all("img").await.is_empty(),
        "a name became an element"
    );
    assert_eq!(
        browser
            .text(&format!("[data-candidate-id='{}'] .name", c[3]))
            .await,
        markup,
        "the name is shown as text"
    );
    assert!(
        browser.text("#title").await.starts_with("<script>"),
        "the title is shown as text"
    );
    for (i, candidate) in c.iter().enumerate() {
        let row = format!("[data-candidate-id='{candidate}']");
        let leads = i == 3;
        assert_eq!(
            browser.attr(&row, "data-leading").await.as_deref(),
            Some(if leads { "true" } else { "false" })
        );
        let class = browser.attr(&row, "class").await.unwrap_or_default();
        assert_eq!(class.split(' ').any(|c| c == "leading"), leads, "{class}");
    }
    assert_eq!(
        browser.attr("#badge", "class").await.as_deref(),
        Some("badge active")
    );
    assert_eq!(browser.text("#badge").await, "LIVE");
    let live_look = badge_look(&browser).await;

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
    browser.wait_for("body[data-total-votes='37']", "the tie").await;
    assert_eq!(body(&browser, "data-leaders").await.as_deref(), Some("2"));
    for (i, candidate) in c.iter().enumerate() {
        let class = browser
            .attr(&format!("[data-candidate-id='{candidate}']"), "class")
            .await
            .unwrap_or_default();
        let tied = i == 1 || i == 2;
        assert_eq!(class.split(' ').any(|c| c == "leading"), tied, "{class}");
        assert_eq!(class.split(' ').any(|c| c == "tied"), tied, "{class}");
    }

    // Cancelled: its own badge, never the LIVE one, and it looks different on screen.
    let cancelled = s
        .change_status(
            &app,
            &id,
            json!({"status": "CANCELLED", "reason": "technical fault in the studio"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    browser
        .wait_for("body[data-state='cancelled']", "the cancellation")
        .await;
    assert_eq!(
        browser.attr("#badge", "class").await.as_deref(),
        Some("badge cancelled")
    );
    assert_eq!(browser.text("#badge").await, "CANCELLED");
    let cancelled_look = badge_look(&browser).await;
    assert_ne!(cancelled_look, live_look, "CANCELLED and LIVE look different");
    browser.close().await;
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

    let browser = Browser::start().await;
    browser
        .open(&format!("{}#token={auditor}", app.url("/audit")))
        .await;
    browser
        .wait_for("body[data-elections='2']", "both elections")
        .await;
    assert_eq!(body(&browser, "data-dead-letters").await.as_deref(), Some("3"));
    assert_eq!(body(&browser, "data-unattributed").await.as_deref(), Some("1"));
    assert_eq!(body(&browser, "data-alarm-state").await.as_deref(), Some("warn"));
    assert_eq!(
        browser.text("#alarm").await,
        "ATTENTION: 3 in the dead-letter queue"
    );
    let banner = browser.find("#dlq").await;
    assert!(
        banner.is_displayed().await.unwrap(),
        "the dead-letter banner is shown"
    );
    let banner = banner.text().await.unwrap();
    assert!(banner.contains("1 unattributed"), "{banner}");
    assert!(
        banner.contains("1 votes of elections not listed here"),
        "{banner}"
    );
    assert_eq!(cell(&browser, &closed_id, "deadLettered").await, "1");
    assert_eq!(cell(&browser, &closed_id, "allowsFinal").await, "no");
    assert_eq!(cell(&browser, &active_id, "deadLettered").await, "0");
    assert_eq!(cell(&browser, &active_id, "allowsFinal").await, "no");
    browser.close().await;
}
