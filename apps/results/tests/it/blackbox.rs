//! Black-box tests of `livevote-results`: the real binary over HTTP, against
//! real PostgreSQL, Redis and the local SQS endpoint. Every endpoint, every
//! error code, the stream, embargo, finality and the CSV export.

use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{Stack, call, candidate_id, create_election, election_id, eventually};
use livevote_ports::{ChangeKind, ElectionChange, ElectionChangeFeed, ElectionChanges};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_enforce_permissions_audit_every_change_and_announce_it() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    let admin = s.admin_token();
    let auditor = s.auditor_token();
    let viewer = s.token("auth0|viewer-1", &[]);
    let h = &s.http;
    let mut feed = s.redis.subscribe().await.unwrap();

    // 401 without or with a bad token; 403 for tokens without elections:admin.
    let list = "/api/v1/admin/elections";
    call(h, &app, "GET", list, None, None, &[])
        .await
        .assert_error(401, "INVALID_TOKEN");
    call(h, &app, "GET", list, Some("not.a.jwt"), None, &[])
        .await
        .assert_error(401, "INVALID_TOKEN");
    for token in [&viewer, &auditor] {
        let a = call(h, &app, "GET", list, Some(token), None, &[]).await;
        a.assert_error(403, "FORBIDDEN");
        assert_eq!(a.body["details"]["required"], "elections:admin");
        let a = call(h, &app, "POST", list, Some(token), Some(json!({})), &[]).await;
        a.assert_error(403, "FORBIDDEN");
    }

    // Create: 201 + Location; bad bodies change nothing.
    let e = create_election(&s, &app, &["Ada", "Grace", "Linus"], false, json!({})).await;
    let id = e["electionId"].as_str().unwrap().to_owned();
    assert_eq!(e["status"], "DRAFT");
    assert_eq!(e["candidates"].as_array().unwrap().len(), 3);
    let base = format!("/api/v1/admin/elections/{id}");
    let now = chrono::Utc::now();
    let valid = json!({"title": "Another", "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(), "candidates": [{"name": "A"}, {"name": "B"}]});
    let created = call(h, &app, "POST", list, Some(&admin), Some(valid.clone()), &[]).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.header("location"),
        format!(
            "/api/v1/admin/elections/{}",
            created.body["electionId"].as_str().unwrap()
        )
    );
    let mut unknown_field = valid.clone();
    unknown_field["voterId"] = json!("x");
    call(h, &app, "POST", list, Some(&admin), Some(unknown_field), &[])
        .await
        .assert_error(400, "INVALID_REQUEST");
    let mut one_candidate = valid.clone();
    one_candidate["candidates"] = json!([{"name": "Solo"}]);
    call(h, &app, "POST", list, Some(&admin), Some(one_candidate), &[])
        .await
        .assert_error(422, "VALIDATION_FAILED");
    let mut backwards = valid.clone();
    backwards["endsAt"] = json!((now - chrono::Duration::hours(1)).to_rfc3339());
    // Both times are well formed; the rule across them is a 422 like the other content rules.
    call(h, &app, "POST", list, Some(&admin), Some(backwards), &[])
        .await
        .assert_error(422, "VALIDATION_FAILED");
    let text = h
        .post(app.url(list))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body(valid.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let mut huge = valid.clone();
    huge["description"] = json!("x".repeat(100 * 1024));
    call(h, &app, "POST", list, Some(&admin), Some(huge), &[])
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");

    // Paging envelope, size bounds and the status filter.
    let page = call(
        h,
        &app,
        "GET",
        &format!("{list}?page=0&size=1"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["totalElements"], 2);
    assert_eq!(page.body["totalPages"], 2);
    assert_eq!(page.body["size"], 1);
    assert_eq!(page.body["content"].as_array().unwrap().len(), 1);
    for bad in ["size=0", "size=101", "page=-1", "status=OPEN"] {
        call(h, &app, "GET", &format!("{list}?{bad}"), Some(&admin), None, &[])
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
    let drafts = call(
        h,
        &app,
        "GET",
        &format!("{list}?status=DRAFT"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert_eq!(drafts.body["totalElements"], 2);

    // Edits and candidates before voting starts.
    let edited = call(
        h,
        &app,
        "PUT",
        &base,
        Some(&admin),
        Some(json!({"title": "Grand Final"})),
        &[],
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["title"], "Grand Final");
    let added = call(
        h,
        &app,
        "POST",
        &format!("{base}/candidates"),
        Some(&admin),
        Some(json!({"name": "Margaret"})),
        &[],
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let new_candidate = added.body["candidates"][3]["candidateId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        added.header("location"),
        format!("{base}/candidates/{new_candidate}")
    );
    call(
        h,
        &app,
        "POST",
        &format!("{base}/candidates"),
        Some(&admin),
        Some(json!({"name": "ada"})),
        &[],
    )
    .await
    .assert_error(422, "VALIDATION_FAILED");
    let renamed = call(
        h,
        &app,
        "PUT",
        &format!("{base}/candidates/{new_candidate}"),
        Some(&admin),
        Some(json!({"name": "Margaret H.", "party": "Apollo"})),
        &[],
    )
    .await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.body["candidates"][3]["party"], "Apollo");
    let removed = call(
        h,
        &app,
        "DELETE",
        &format!("{base}/candidates/{new_candidate}"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert_eq!(removed.status, 204);
    let unknown_candidate = format!("{base}/candidates/{}", uuid::Uuid::new_v4());
    call(h, &app, "DELETE", &unknown_candidate, Some(&admin), None, &[])
        .await
        .assert_error(404, "CANDIDATE_NOT_FOUND");

    // Lifecycle: DRAFT cannot open directly; SCHEDULED -> ACTIVE; then settings are locked.
    let status = format!("{base}/status");
    call(
        h,
        &app,
        "PATCH",
        &status,
        Some(&admin),
        Some(json!({"status": "ACTIVE"})),
        &[],
    )
    .await
    .assert_error(409, "INVALID_TRANSITION");
    call(
        h,
        &app,
        "PATCH",
        &status,
        Some(&admin),
        Some(json!({"status": "CANCELLED"})),
        &[],
    )
    .await
    .assert_error(400, "INVALID_REQUEST");
    for to in ["SCHEDULED", "ACTIVE"] {
        let moved = call(
            h,
            &app,
            "PATCH",
            &status,
            Some(&admin),
            Some(json!({"status": to})),
            &[],
        )
        .await;
        assert_eq!(moved.status, 200, "{}", moved.body);
        assert_eq!(moved.body["effectiveStatus"], to);
    }
    call(
        h,
        &app,
        "PUT",
        &base,
        Some(&admin),
        Some(json!({"title": "Too late"})),
        &[],
    )
    .await
    .assert_error(409, "ELECTION_LOCKED");
    call(
        h,
        &app,
        "POST",
        &format!("{base}/candidates"),
        Some(&admin),
        Some(json!({"name": "Late"})),
        &[],
    )
    .await
    .assert_error(409, "ELECTION_LOCKED");
    let hidden = call(
        h,
        &app,
        "PUT",
        &format!("{base}/visibility"),
        Some(&admin),
        Some(json!({"resultsVisibility": "HIDDEN"})),
        &[],
    )
    .await;
    assert_eq!(hidden.body["resultsVisibility"], "HIDDEN");
    let shown = call(
        h,
        &app,
        "PUT",
        &format!("{base}/visibility"),
        Some(&admin),
        Some(json!({"resultsVisibility": "LIVE"})),
        &[],
    )
    .await;
    assert_eq!(shown.body["resultsVisibility"], "LIVE");
    let cancelled = call(h, &app, "DELETE", &base, Some(&admin), None, &[]).await;
    assert_eq!(cancelled.status, 204);
    call(h, &app, "DELETE", &base, Some(&admin), None, &[])
        .await
        .assert_error(409, "INVALID_TRANSITION");
    let got = call(h, &app, "GET", &base, Some(&admin), None, &[]).await;
    assert_eq!(got.body["status"], "CANCELLED");

    // Unknown and malformed ids.
    let missing = format!("/api/v1/admin/elections/{}", uuid::Uuid::new_v4());
    call(h, &app, "GET", &missing, Some(&admin), None, &[])
        .await
        .assert_error(404, "ELECTION_NOT_FOUND");
    call(
        h,
        &app,
        "PATCH",
        &format!("{missing}/status"),
        Some(&admin),
        Some(json!({"status": "CLOSED"})),
        &[],
    )
    .await
    .assert_error(404, "ELECTION_NOT_FOUND");
    call(
        h,
        &app,
        "GET",
        "/api/v1/admin/elections/not-a-uuid",
        Some(&admin),
        None,
        &[],
    )
    .await
    .assert_error(400, "INVALID_REQUEST");
    call(h, &app, "POST", &base, Some(&admin), None, &[])
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");

    // The audit log: every change, in order, with the admin's sub; auditors only.
    let log_path = format!("/api/v1/audit/elections/{id}/log?size=100");
    call(h, &app, "GET", &log_path, Some(&admin), None, &[])
        .await
        .assert_error(403, "FORBIDDEN");
    let log = call(h, &app, "GET", &log_path, Some(&auditor), None, &[]).await;
    assert_eq!(log.status, 200, "{}", log.body);
    let actions: Vec<&str> = log.body["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "ELECTION_CREATED",
            "ELECTION_EDITED",
            "CANDIDATE_ADDED",
            "CANDIDATE_UPDATED",
            "CANDIDATE_REMOVED",
            "ELECTION_SCHEDULED",
            "ELECTION_OPENED",
            "RESULTS_HIDDEN",
            "RESULTS_REVEALED",
            "ELECTION_CANCELLED"
        ]
    );
    assert!(
        log.body["content"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["actor"] == "auth0|producer-1")
    );
    let paged = call(
        h,
        &app,
        "GET",
        &format!("/api/v1/audit/elections/{id}/log?page=1&size=4"),
        Some(&auditor),
        None,
        &[],
    )
    .await;
    assert_eq!(paged.body["totalElements"], 10);
    assert_eq!(paged.body["content"][0]["action"], "CANDIDATE_REMOVED");

    // Every change was announced on the change feed, in order.
    let election = livevote_domain::ElectionId::parse(&id).unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 10 {
        let next = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("an announcement");
        if let Some(ElectionChange::Changed { election_id, kind }) = next
            && election_id == election
        {
            kinds.push(kind);
        }
    }
    assert_eq!(kinds[0], ChangeKind::Created);
    assert_eq!(kinds[6], ChangeKind::Opened);
    assert_eq!(kinds[7], ChangeKind::VisibilityChanged);
    assert_eq!(kinds[9], ChangeKind::Cancelled);
}

/// Units of 0.1 %: the percentages of one answer.
fn tenths(totals: &Value) -> Vec<i64> {
    totals
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["percentage"].as_f64().unwrap() * 10.0).round() as i64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_election_with_votes_is_cancelled_only_by_a_status_change_with_a_reason() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    let admin = s.admin_token();
    let h = &s.http;
    let e = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let id = e["electionId"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/admin/elections/{id}");
    for i in 0..3 {
        s.accept(election_id(&e), candidate_id(&e, i % 2), &format!("auth0|v{i}"))
            .await;
    }
    let auditor = s.auditor_token();
    let log = |h: &reqwest::Client| {
        let (app, admin, id) = (&app, auditor.clone(), id.clone());
        let h = h.clone();
        async move {
            call(
                &h,
                app,
                "GET",
                &format!("/api/v1/audit/elections/{id}/log?size=100"),
                Some(&admin),
                None,
                &[],
            )
            .await
            .body
        }
    };
    let before = call(h, &app, "GET", &base, Some(&admin), None, &[]).await.body;
    let log_before = log(h).await["totalElements"].clone();

    // One DELETE must not take a live show's votes away.
    let refused = call(h, &app, "DELETE", &base, Some(&admin), None, &[]).await;
    refused.assert_error(409, "ELECTION_HAS_VOTES");
    assert!(
        refused.body["message"].as_str().unwrap().contains("3 votes"),
        "{}",
        refused.body
    );
    // A status change without a reason, or with a bad one, is refused too.
    for (body, field) in [
        (json!({"status": "CANCELLED"}), "reason"),
        (json!({"status": "CANCELLED", "reason": " x "}), "reason"),
        (
            json!({"status": "CLOSED", "reason": "a reason for a close"}),
            "reason",
        ),
        (json!({"status": "DRAFT"}), "status"),
    ] {
        let a = call(
            h,
            &app,
            "PATCH",
            &format!("{base}/status"),
            Some(&admin),
            Some(body.clone()),
            &[],
        )
        .await;
        a.assert_error(400, "INVALID_REQUEST");
        assert_eq!(a.body["details"]["field"], field, "{body}: {}", a.body);
    }
    let after = call(h, &app, "GET", &base, Some(&admin), None, &[]).await.body;
    assert_eq!(after["status"], "ACTIVE");
    assert_eq!(after["version"], before["version"], "refusals change nothing");
    assert_eq!(
        log(h).await["totalElements"],
        log_before,
        "refusals are not logged as changes"
    );

    // The explicit change with a reason cancels, and the audit log keeps the reason.
    let reason = "the phone lines were compromised";
    let cancelled = call(
        h,
        &app,
        "PATCH",
        &format!("{base}/status"),
        Some(&admin),
        Some(json!({"status": "CANCELLED", "reason": reason})),
        &[],
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "CANCELLED");
    let entries = log(h).await;
    let last = entries["content"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "ELECTION_CANCELLED", "{entries}");
    assert_eq!(last["actor"], "auth0|producer-1");
    let details = last["details"].as_str().unwrap();
    assert!(
        details.contains(reason) && details.contains("3 votes"),
        "{details}"
    );

    // An election without votes is still cancelled by DELETE.
    let empty = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let empty_base = format!(
        "/api/v1/admin/elections/{}",
        empty["electionId"].as_str().unwrap()
    );
    assert_eq!(
        call(h, &app, "DELETE", &empty_base, Some(&admin), None, &[])
            .await
            .status,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_cacheable_embargoable_and_final_only_once_reconciled() {
    let s = Stack::new().await;
    let app = s.start(&[("LIVEVOTE_RESULTS_RECONCILE_SECS", "1")]);
    let (admin, auditor, h) = (s.admin_token(), s.auditor_token(), &s.http);
    let e = create_election(&s, &app, &["Ada", "Grace", "Linus"], true, json!({})).await;
    let (id, eid) = (e["electionId"].as_str().unwrap().to_owned(), election_id(&e));
    let path = format!("/api/v1/results/{id}");

    // No votes yet: zero everywhere.
    let empty = call(h, &app, "GET", &path, None, None, &[]).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body["totalVotes"], 0);
    assert_eq!(tenths(&empty.body["totals"]), [0, 0, 0]);

    // 3 / 2 / 1 accepted (live tallies), nothing stored yet.
    let mut accepted = Vec::new();
    for (i, c) in [0, 0, 0, 1, 1, 2].into_iter().enumerate() {
        accepted.push(s.accept(eid, candidate_id(&e, c), &format!("auth0|v{i}")).await);
    }
    let live = eventually("live counts", Duration::from_secs(3), || async {
        let a = call(h, &app, "GET", &path, None, None, &[]).await;
        (a.body["totalVotes"] == 6).then_some(a)
    })
    .await;
    let body = &live.body;
    for key in [
        "electionId",
        "electionTitle",
        "status",
        "totals",
        "totalVotes",
        "generatedAt",
        "version",
        "asOf",
        "final",
        "embargoed",
    ] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(body["electionTitle"], "Song of the Night");
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["final"], false);
    assert_eq!(body["embargoed"], false);
    assert_eq!(body["source"], "live");
    let votes: Vec<u64> = body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["votes"].as_u64().unwrap())
        .collect();
    assert_eq!(votes, [3, 2, 1]);
    assert_eq!(body["totals"][0]["name"], "Ada");
    assert_eq!(body["totals"][0]["party"], "Indie");
    let p = tenths(&body["totals"]);
    assert_eq!(p, [500, 333, 167]);
    assert_eq!(p.iter().sum::<i64>(), 1000, "percentages sum to exactly 100");
    assert_eq!(
        live.header("cache-control"),
        "public, max-age=1, stale-while-revalidate=1"
    );

    // ETag / If-None-Match -> 304, and a new ETag once counts change.
    let etag = live.header("etag").to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    let same = call(h, &app, "GET", &path, None, None, &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, 304);
    assert_eq!(same.header("etag"), etag);
    let compact = call(
        h,
        &app,
        "GET",
        &format!("/api/v1/results/live/{id}"),
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(compact.status, 200);
    assert_eq!(compact.body["totalVotes"], 6);
    assert_eq!(compact.body["counts"][candidate_id(&e, 1).to_string()], 2);
    assert_eq!(
        call(
            h,
            &app,
            "GET",
            &format!("/api/v1/results/live/{id}"),
            None,
            None,
            &[("if-none-match", compact.header("etag"))]
        )
        .await
        .status,
        304
    );
    accepted.push(s.accept(eid, candidate_id(&e, 2), "auth0|v6").await);
    let changed = eventually("new counts within a second", Duration::from_secs(2), || async {
        let a = call(h, &app, "GET", &path, None, None, &[("if-none-match", &etag)]).await;
        (a.status == 200).then_some(a)
    })
    .await;
    assert_eq!(changed.body["totalVotes"], 7);
    assert_ne!(changed.header("etag"), etag);

    // Unknown and malformed elections.
    call(
        h,
        &app,
        "GET",
        &format!("/api/v1/results/{}", uuid::Uuid::new_v4()),
        None,
        None,
        &[],
    )
    .await
    .assert_error(404, "ELECTION_NOT_FOUND");
    call(h, &app, "GET", "/api/v1/results/live/42", None, None, &[])
        .await
        .assert_error(400, "INVALID_REQUEST");

    // Embargo: no counts anywhere public; CSV refused; auditors still see everything.
    let visibility = format!("/api/v1/admin/elections/{id}/visibility");
    call(
        h,
        &app,
        "PUT",
        &visibility,
        Some(&admin),
        Some(json!({"resultsVisibility": "HIDDEN"})),
        &[],
    )
    .await;
    let hidden = eventually("embargo", Duration::from_secs(2), || async {
        let a = call(h, &app, "GET", &path, None, None, &[]).await;
        (a.body["embargoed"] == true).then_some(a)
    })
    .await;
    assert_eq!(hidden.body["totals"], json!([]));
    assert_eq!(hidden.body["totalVotes"], Value::Null);
    let compact = call(
        h,
        &app,
        "GET",
        &format!("/api/v1/results/live/{id}"),
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(compact.body["counts"], Value::Null);
    assert_eq!(compact.body["totalVotes"], Value::Null);
    let csv_path = format!("/api/v1/results/{id}/export.csv");
    call(h, &app, "GET", &csv_path, None, None, &[])
        .await
        .assert_error(403, "RESULTS_EMBARGOED");
    call(
        h,
        &app,
        "PUT",
        &visibility,
        Some(&admin),
        Some(json!({"resultsVisibility": "LIVE"})),
        &[],
    )
    .await;

    // Closed but not reconciled (nothing stored yet: 7 accepted are "lost"): not final.
    let closed = call(
        h,
        &app,
        "PATCH",
        &format!("/api/v1/admin/elections/{id}/status"),
        Some(&admin),
        Some(json!({"status": "CLOSED"})),
        &[],
    )
    .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    let not_final = eventually("closed", Duration::from_secs(2), || async {
        let a = call(h, &app, "GET", &path, None, None, &[]).await;
        (a.body["status"] == "CLOSED" && a.body["embargoed"] == false).then_some(a)
    })
    .await;
    assert_eq!(not_final.body["final"], false);
    assert_eq!(not_final.body["source"], "live");
    let rec_path = format!("/api/v1/audit/elections/{id}/reconciliation");
    let rec = call(h, &app, "GET", &rec_path, Some(&auditor), None, &[]).await;
    assert_eq!(rec.status, 200, "{}", rec.body);
    assert_eq!(rec.body["accepted"], 7);
    assert_eq!(rec.body["persisted"], 0);
    assert_eq!(rec.body["inFlight"], 0);
    assert_eq!(rec.body["verdict"], "lost");
    assert_eq!(rec.body["verdictCount"], 7);
    assert_eq!(rec.body["alarm"], true);
    assert_eq!(rec.body["liveVsPersistedDifference"], 7);
    call(h, &app, "GET", &csv_path, None, None, &[])
        .await
        .assert_error(409, "RESULTS_NOT_FINAL");
    // Auditors export the persisted counts at any time.
    let early = h
        .get(app.url(&csv_path))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status().as_u16(), 200);
    assert_eq!(early.headers()["x-results-final"], "false");
    let early = early.text().await.unwrap();
    assert!(early.lines().skip(1).all(|l| l.contains(",0,0.0")), "{early}");

    // The periodic reconciliation tells the metrics (and so the alerts) as much.
    let gauge = |name: String| {
        let url = app.url("/metrics");
        async move {
            let text = h.get(url).send().await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")).map(|v| v.trim().to_owned()))
        }
    };
    let lost = format!("livevote_reconciliation_lost_votes{{election=\"{id}\"}}");
    eventually("the lost gauge", Duration::from_secs(5), || async {
        (gauge(lost.clone()).await.as_deref() == Some("7")).then_some(())
    })
    .await;
    let in_flight = format!("livevote_reconciliation_in_flight_votes{{election=\"{id}\"}}");
    assert_eq!(gauge(in_flight).await.as_deref(), Some("0"));
    assert_eq!(
        gauge("livevote_dead_letter_messages".into()).await.as_deref(),
        Some("0")
    );

    // The processor stores them: balanced, final, counts from PostgreSQL.
    s.persist(&accepted).await;
    eventually("the lost gauge back to 0", Duration::from_secs(5), || async {
        (gauge(lost.clone()).await.as_deref() == Some("0")).then_some(())
    })
    .await;
    let fin = eventually("final", Duration::from_secs(3), || async {
        let a = call(h, &app, "GET", &path, None, None, &[]).await;
        (a.body["final"] == true).then_some(a)
    })
    .await;
    assert_eq!(fin.body["source"], "persisted");
    assert_eq!(fin.body["totalVotes"], 7);
    let p = tenths(&fin.body["totals"]);
    assert_eq!(p.iter().sum::<i64>(), 1000, "{p:?}");
    for (units, votes) in p.iter().zip([3.0, 2.0, 2.0]) {
        assert!((*units as f64 - votes / 7.0 * 1000.0).abs() < 1.0, "{p:?}");
    }
    assert_eq!(fin.header("cache-control"), "public, max-age=5");
    let rec = call(h, &app, "GET", &rec_path, Some(&auditor), None, &[]).await;
    assert_eq!(rec.body["verdict"], "balanced");
    assert_eq!(rec.body["alarm"], false);
    assert_eq!(rec.body["allowsFinal"], true);
    let per: BTreeMap<String, (u64, u64)> = rec.body["perCandidate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                (c["accepted"].as_u64().unwrap(), c["persisted"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(per["Ada"], (3, 3));
    assert_eq!(per["Linus"], (2, 2));

    // The CSV of final results, for everyone.
    let csv = h.get(app.url(&csv_path)).send().await.unwrap();
    assert_eq!(csv.status().as_u16(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.headers()["x-results-final"], "true");
    let text = csv.text().await.unwrap();
    let mut expected = String::from("candidate_id,name,party,votes,percentage\r\n");
    for (i, (name, votes)) in [("Ada", 3), ("Grace", 2), ("Linus", 2)].into_iter().enumerate() {
        expected.push_str(&format!(
            "{},\"{name}\",\"Indie\",{votes},{:.1}\r\n",
            candidate_id(&e, i),
            p[i] as f64 / 10.0
        ));
    }
    assert_eq!(text, expected);

    // Statistics: auditors only.
    let stats_path = format!("/api/v1/results/statistics/{id}");
    call(h, &app, "GET", &stats_path, None, None, &[])
        .await
        .assert_error(401, "INVALID_TOKEN");
    call(h, &app, "GET", &stats_path, Some(&admin), None, &[])
        .await
        .assert_error(403, "FORBIDDEN");
    let stats = call(h, &app, "GET", &stats_path, Some(&auditor), None, &[]).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.body["persistedVotes"], 7);
    assert_eq!(stats.body["acceptedVotes"], 7);
    let hours: u64 = stats.body["votesPerHour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["votes"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, 7);
    assert!(
        stats.body["peakMinute"]["votes"].as_u64().unwrap() >= 4,
        "{}",
        stats.body
    );
    assert!(stats.body["firstVoteAt"].is_string());

    // The dashboard's list: every election with its verdict.
    let all = call(
        h,
        &app,
        "GET",
        "/api/v1/audit/reconciliation",
        Some(&auditor),
        None,
        &[],
    )
    .await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body["alarm"], false);
    assert_eq!(all.body["content"][0]["electionId"], id);
    call(
        h,
        &app,
        "GET",
        "/api/v1/audit/reconciliation",
        Some(&admin),
        None,
        &[],
    )
    .await
    .assert_error(403, "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_answer_only_the_voter_who_cast_the_vote() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    let h = &s.http;
    let e = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let eid = election_id(&e);
    let stored = s.accept(eid, candidate_id(&e, 0), "auth0|owner").await;
    s.persist(std::slice::from_ref(&stored)).await;
    let pending = s.accept(eid, candidate_id(&e, 1), "auth0|second").await;
    let owner = s.token("auth0|owner", &[]);
    let second = s.token("auth0|second", &[]);

    let path = format!("/api/v1/votes/{}/receipt", stored.vote.vote_id);
    call(h, &app, "GET", &path, None, None, &[])
        .await
        .assert_error(401, "INVALID_TOKEN");
    let mine = call(h, &app, "GET", &path, Some(&owner), None, &[]).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["state"], "persisted");
    assert_eq!(mine.body["candidateId"], candidate_id(&e, 0).to_string());
    assert!(mine.body["persistedAt"].is_string());
    // Someone else's vote looks exactly like an unknown one.
    call(h, &app, "GET", &path, Some(&second), None, &[])
        .await
        .assert_error(404, "VOTE_NOT_FOUND");
    call(
        h,
        &app,
        "GET",
        &format!("/api/v1/votes/{}/receipt", uuid::Uuid::now_v7()),
        Some(&owner),
        None,
        &[],
    )
    .await
    .assert_error(404, "VOTE_NOT_FOUND");
    call(
        h,
        &app,
        "GET",
        "/api/v1/votes/nope/receipt",
        Some(&owner),
        None,
        &[],
    )
    .await
    .assert_error(400, "INVALID_REQUEST");

    // Accepted but not stored yet: found through the election's claim.
    let on_its_way = format!("/api/v1/votes/{}/receipt", pending.vote.vote_id);
    call(h, &app, "GET", &on_its_way, Some(&second), None, &[])
        .await
        .assert_error(404, "VOTE_NOT_FOUND");
    let accepted = call(
        h,
        &app,
        "GET",
        &format!("{on_its_way}?electionId={eid}"),
        Some(&second),
        None,
        &[],
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["state"], "accepted");
    assert_eq!(accepted.body["persistedAt"], Value::Null);
    call(
        h,
        &app,
        "GET",
        &format!("{on_its_way}?electionId={eid}"),
        Some(&owner),
        None,
        &[],
    )
    .await
    .assert_error(404, "VOTE_NOT_FOUND");
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<String>,
    data: Value,
    at: Instant,
}

/// Reads a stream's events as they arrive.
struct EventReader {
    events: livevote_testkit::sse::Events,
}

impl EventReader {
    async fn open(http: &reqwest::Client, url: String, last_event_id: Option<&str>) -> Self {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            events: livevote_testkit::sse::events(response),
        }
    }

    async fn next(&mut self, limit: Duration) -> Sse {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.events.next())
                .await
                .expect("an event in time")
                .expect("the stream stays open")
                .expect("a well-formed event stream");
            // Every event of the service is named; an unnamed one ("message") is not ours to read.
            if event.event.is_empty() || event.event == "message" {
                continue;
            }
            return Sse {
                event: event.event,
                id: (!event.id.is_empty()).then_some(event.id),
                data: serde_json::from_str(&event.data).unwrap_or(Value::Null),
                at: Instant::now(),
            };
        }
    }

    /// The next event of kind `kind`, skipping others.
    async fn next_of(&mut self, kind: &str, limit: Duration) -> Sse {
        let deadline = Instant::now() + limit;
        loop {
            let e = self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await;
            if e.event == kind {
                return e;
            }
        }
    }
}

fn reads_of(metrics: &str, election: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("livevote_results_reads_total") && l.contains(election))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_a_snapshot_paced_updates_status_changes_heartbeats_and_resumes() {
    let s = Stack::new().await;
    // Updates paced at one a second here (200 ms by default), so the pacing is plain to see.
    let app = s.start(&[
        ("LIVEVOTE_RESULTS_HEARTBEAT_SECS", "2"),
        ("LIVEVOTE_RESULTS_STREAM_UPDATE_MS", "1000"),
    ]);
    let (admin, h) = (s.admin_token(), &s.http);
    let e = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let (id, eid) = (e["electionId"].as_str().unwrap().to_owned(), election_id(&e));
    s.accept(eid, candidate_id(&e, 0), "auth0|first").await;
    let url = app.url(&format!("/api/v1/results/{id}/stream"));

    let mut stream = EventReader::open(h, url.clone(), None).await;
    let snapshot = stream.next(Duration::from_secs(5)).await;
    assert_eq!(snapshot.event, "SNAPSHOT");
    let seq0 = snapshot.data["seq"].as_u64().unwrap();
    assert_eq!(snapshot.id.as_deref(), Some(seq0.to_string().as_str()));
    assert_eq!(snapshot.data["totalVotes"], 1);

    // Votes arriving continuously for 3 s: updates carry the new counts, at most one per second.
    let voter = {
        let (redis_store, e) = (s.redis.clone(), e.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                let c = stream_claim(&e, i);
                use livevote_ports::VoteDedup;
                redis_store.claim(&c).await.unwrap();
                redis_store.confirm(&c).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut updates = Vec::new();
    while updates.len() < 3 {
        let u = stream.next_of("VOTE_UPDATE", Duration::from_secs(5)).await;
        assert!(u.data["seq"].as_u64().unwrap() > seq0);
        updates.push(u);
    }
    for pair in updates.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "updates {gap:?} apart");
        assert!(pair[1].data["totalVotes"].as_u64() > pair[0].data["totalVotes"].as_u64());
    }
    voter.await.unwrap();

    // A heartbeat every 2 s here (15 s by default).
    let beat = stream.next_of("HEARTBEAT", Duration::from_secs(5)).await;
    assert!(beat.data["seq"].as_u64().is_some());

    // Many clients of one election share one read of the stores.
    let before = reads_of(
        &h.get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        &id,
    );
    let mut others = Vec::new();
    for _ in 0..20 {
        let mut r = EventReader::open(h, url.clone(), None).await;
        assert_eq!(r.next(Duration::from_secs(5)).await.event, "SNAPSHOT");
        others.push(r);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = reads_of(
        &h.get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        &id,
    );
    // One feed polls every 250 ms: about 12 reads in 3 s, whatever the number of clients.
    assert!(
        after - before <= 30,
        "{} store reads for 21 clients in 3 s",
        after - before
    );

    // Closing is a STATUS_CHANGE, sent at once.
    let closed_at = Instant::now();
    let moved = call(
        h,
        &app,
        "PATCH",
        &format!("/api/v1/admin/elections/{id}/status"),
        Some(&admin),
        Some(json!({"status": "CLOSED"})),
        &[],
    )
    .await;
    assert_eq!(moved.status, 200);
    let change = stream.next_of("STATUS_CHANGE", Duration::from_secs(3)).await;
    assert_eq!(change.data["status"], "CLOSED");
    assert!(
        closed_at.elapsed() < Duration::from_secs(2),
        "status change took {:?}",
        closed_at.elapsed()
    );
    for r in &mut others {
        assert_eq!(
            r.next_of("STATUS_CHANGE", Duration::from_secs(3)).await.data["status"],
            "CLOSED"
        );
    }

    // A reconnect with Last-Event-ID resumes with a fresh snapshot.
    let last = change.id.clone().unwrap();
    drop(stream);
    let mut resumed = EventReader::open(h, url, Some(&last)).await;
    let again = resumed.next(Duration::from_secs(5)).await;
    assert_eq!(again.event, "SNAPSHOT");
    assert_eq!(again.data["resumedFrom"], last.as_str());
    assert_eq!(again.data["status"], "CLOSED");
    assert!(again.data["seq"].as_u64().unwrap() >= last.parse::<u64>().unwrap());

    // Unknown election: 404 before any stream opens.
    call(
        h,
        &app,
        "GET",
        &format!("/api/v1/results/{}/stream", uuid::Uuid::new_v4()),
        None,
        None,
        &[],
    )
    .await
    .assert_error(404, "ELECTION_NOT_FOUND");
}

fn stream_claim(e: &Value, i: usize) -> livevote_ports::Claim {
    livevote_ports::Claim {
        vote: livevote_domain::Ballot {
            vote_id: livevote_domain::VoteId::generate(),
            election_id: election_id(e),
            candidate_id: candidate_id(e, i % 2),
            voter_id: livevote_domain::VoterId::parse(format!("auth0|stream-{i}")).unwrap(),
            accepted_at: chrono::Utc::now(),
            slot: livevote_domain::VoteSlot::FIRST,
        },
        idempotency_key: None,
        policy: livevote_domain::VotePolicy::Single,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_the_contract_are_served() {
    let s = Stack::new().await;
    let app = s.start(&[]);
    let h = &s.http;
    let ready = call(h, &app, "GET", "/health/ready", None, None, &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    for dep in ["postgres", "redis", "queue", "jwks"] {
        assert_eq!(ready.body["checks"][dep]["status"], "up", "{}", ready.body);
    }
    assert_eq!(
        call(h, &app, "GET", "/health/live", None, None, &[]).await.status,
        200
    );
    let doc = call(h, &app, "GET", "/api-docs/openapi.json", None, None, &[]).await;
    assert!(doc.body["paths"]["/api/v1/results/{electionId}"].is_object());
    call(h, &app, "GET", "/nope", None, None, &[])
        .await
        .assert_error(404, "NOT_FOUND");
    let metrics = h
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("livevote_http_requests_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_the_process_exits_promptly() {
    let s = Stack::new().await;
    let mut app = s.start(&[]);
    let e = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let id = e["electionId"].as_str().unwrap().to_owned();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut r = EventReader::open(&s.http, app.url(&format!("/api/v1/results/{id}/stream")), None).await;
        assert_eq!(r.next(Duration::from_secs(5)).await.event, "SNAPSHOT");
        streams.push(r);
    }
    let started = Instant::now();
    app.signal("-TERM");
    // Each stream ends (the body completes) instead of holding the drain for the grace period.
    for r in &mut streams {
        let end = tokio::time::timeout(Duration::from_secs(5), r.events.next())
            .await
            .expect("the stream ends within 5 s of SIGTERM");
        assert!(end.is_none(), "{end:?}");
    }
    let status = tokio::task::block_in_place(|| app.wait(Duration::from_secs(10)));
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit took {:?} (the grace period is 20 s)",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_gzipped_for_clients_that_ask_and_streams_never_are() {
    use std::io::Read;
    let s = Stack::new().await;
    let app = s.start(&[]);
    let e = create_election(&s, &app, &["Ada", "Grace"], true, json!({})).await;
    let (id, eid) = (e["electionId"].as_str().unwrap().to_owned(), election_id(&e));
    s.accept(eid, candidate_id(&e, 1), "auth0|gzip-1").await;
    let url = app.url(&format!("/api/v1/results/{id}"));

    let path = format!("/api/v1/results/{id}");
    let plain = eventually("the vote counted", Duration::from_secs(3), || async {
        let a = call(&s.http, &app, "GET", &path, None, None, &[]).await;
        (a.body["totalVotes"] == 1).then_some(a)
    })
    .await;
    assert_eq!(plain.header("content-encoding"), "", "not asked: not compressed");
    let plain = plain.body;

    let gzipped = s
        .http
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(
        gzipped.headers()["vary"]
            .to_str()
            .unwrap()
            .contains("accept-encoding"),
        "caches keep the two forms apart"
    );
    assert!(
        gzipped.headers()["x-request-id"]
            .to_str()
            .is_ok_and(|v| !v.is_empty())
    );
    let bytes = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    let unzipped: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        unzipped["totals"], plain["totals"],
        "the same results, compressed"
    );
    assert_eq!(unzipped["totalVotes"], 1);

    // The error envelope survives compression.
    let missing = s
        .http
        .get(app.url("/api/v1/results/00000000-0000-4000-8000-000000000000"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let encoded = missing.headers().get("content-encoding").cloned();
    let bytes = missing.bytes().await.unwrap();
    let body: Value = if encoded.is_some() {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str(&text).unwrap()
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(body["code"], "ELECTION_NOT_FOUND", "{body}");

    // A stream's events must leave at once: never compressed.
    let mut stream = s
        .http
        .get(app.url(&format!("/api/v1/results/{id}/stream")))
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers().get("content-encoding"), None);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("the snapshot arrives at once")
        .unwrap()
        .expect("a first chunk");
    assert!(
        String::from_utf8_lossy(&first).contains("event:"),
        "plain text events"
    );
}
