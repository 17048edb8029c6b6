//! The PostgreSQL election catalog and admin against a real server, one
//! fresh database per test.

use crate::common::fresh_database;
use chrono::{Duration, SubsecRound, Utc};
use livevote_domain::{
    CandidateDraft, CandidateName, Election, ElectionEdit, ElectionId, ElectionStatus, ResultsVisibility,
    VotePolicy,
};
use livevote_ports::{AdminAction, AdminError, ElectionAdmin, ElectionCatalog, PageRequest};
use livevote_postgres::PgElections;
use livevote_testkit::fixtures::{new_election, operator};

fn sample(title: &str, offset_hours: i64) -> Election {
    let now = Utc::now().trunc_subsecs(6);
    let start = now + Duration::hours(offset_hours);
    let new = new_election(
        title,
        &["Ada", "Grace", "Linus"],
        start,
        start + Duration::hours(2),
    );
    livevote_testkit::fixtures::create(new, now)
}

#[tokio::test]
async fn create_then_read_back_the_same_election() {
    let db = PgElections::new(fresh_database().await);
    let e = sample("Round trip", 1);
    db.create(&e, &operator(), Utc::now()).await.unwrap();
    assert_eq!(db.get(e.id()).await.unwrap().as_ref(), Some(&e));
    assert_eq!(db.load(e.id()).await.unwrap(), e);
    assert!(db.get(ElectionId::generate()).await.unwrap().is_none());
    assert!(matches!(
        db.load(ElectionId::generate()).await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        db.create(&e, &operator(), Utc::now()).await,
        Err(AdminError::AlreadyExists(_))
    ));
}

#[tokio::test]
async fn every_policy_round_trips_and_an_edit_changes_it() {
    let db = PgElections::new(fresh_database().await);
    for policy in [
        VotePolicy::Changeable,
        VotePolicy::from_parts("multi", Some(20), None).unwrap(),
        VotePolicy::from_parts("multi", Some(10), Some(3)).unwrap(),
    ] {
        let mut new = new_election(
            "Policies",
            &["Ada", "Grace"],
            Utc::now(),
            Utc::now() + Duration::hours(1),
        );
        new.policy = policy;
        let e = livevote_testkit::fixtures::create(new, Utc::now().trunc_subsecs(6));
        db.create(&e, &operator(), Utc::now()).await.unwrap();
        assert_eq!(db.load(e.id()).await.unwrap().policy(), policy);
    }
    let mut e = sample("Edited policy", 1);
    db.create(&e, &operator(), Utc::now()).await.unwrap();
    let five = VotePolicy::from_parts("multi", Some(5), None).unwrap();
    e.edit(
        ElectionEdit {
            policy: Some(five),
            ..Default::default()
        },
        Utc::now(),
    )
    .unwrap();
    let saved = db
        .update(&e, AdminAction::Edited, &operator(), "policy", Utc::now())
        .await
        .unwrap();
    assert_eq!(saved.policy(), five);
    assert_eq!(db.load(e.id()).await.unwrap().policy(), five);
}

#[tokio::test]
async fn updates_bump_the_version_keep_candidates_in_order_and_are_audited() {
    let db = PgElections::new(fresh_database().await);
    let mut e = sample("Edits", 1);
    db.create(&e, &operator(), Utc::now()).await.unwrap();
    let now = Utc::now();
    let added = e
        .add_candidate(
            CandidateDraft {
                name: CandidateName::parse("Barbara").unwrap(),
                party: None,
            },
            now,
            livevote_domain::CandidateId::generate(),
        )
        .unwrap();
    let removed = e.candidates()[0].id();
    e.remove_candidate(removed, now).unwrap();
    let saved = db
        .update(
            &e,
            AdminAction::CandidateAdded,
            &operator(),
            "added Barbara, removed Ada",
            now,
        )
        .await
        .unwrap();
    assert_eq!(saved.version(), 2);
    let names: Vec<&str> = saved.candidates().iter().map(|c| c.name().as_str()).collect();
    assert_eq!(names, ["Grace", "Linus", "Barbara"]);
    assert!(saved.candidate(added).is_some() && saved.candidate(removed).is_none());
    let mut hidden = saved.clone();
    hidden.set_visibility(ResultsVisibility::Hidden);
    let saved = db
        .update(&hidden, AdminAction::ResultsHidden, &operator(), "", now)
        .await
        .unwrap();
    assert!(saved.is_embargoed());
    let log = db
        .audit_log(e.id(), PageRequest { page: 0, size: 10 })
        .await
        .unwrap();
    let actions: Vec<(AdminAction, u64)> = log.content.iter().map(|a| (a.action, a.version)).collect();
    assert_eq!(
        actions,
        vec![
            (AdminAction::Created, 1),
            (AdminAction::CandidateAdded, 2),
            (AdminAction::ResultsHidden, 3)
        ]
    );
    assert!(log.content.iter().all(|a| a.actor == operator()));
    assert_eq!(log.content[1].details, "added Barbara, removed Ada");
}

#[tokio::test]
async fn concurrent_transitions_one_wins_the_other_gets_a_version_conflict() {
    let db = PgElections::new(fresh_database().await);
    let e = sample("Race", 1);
    db.create(&e, &operator(), Utc::now()).await.unwrap();
    let now = Utc::now();
    // Both admins read version 1 before either saves: loading inside the
    // spawning loop would let the first save land before the second read.
    let mut copies = Vec::new();
    for to in [ElectionStatus::Scheduled, ElectionStatus::Cancelled] {
        copies.push((to, db.load(e.id()).await.unwrap()));
    }
    let mut tasks = Vec::new();
    for (to, mut mine) in copies {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            if to == ElectionStatus::Cancelled {
                mine.cancel(now, 0, None).unwrap();
            } else {
                mine.transition(to, now).unwrap();
            }
            db.update(&mine, AdminAction::Edited, &operator(), to.as_str(), now)
                .await
        }));
    }
    let mut won = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(saved) => won.push(saved),
            Err(AdminError::VersionConflict {
                expected: 1,
                actual: 2,
                ..
            }) => conflicts += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won.len(), conflicts), (1, 1));
    let stored = db.load(e.id()).await.unwrap();
    assert_eq!(stored.stored_status(), won[0].stored_status());
    assert_eq!(stored.version(), 2);
    let log = db
        .audit_log(e.id(), PageRequest { page: 0, size: 10 })
        .await
        .unwrap();
    assert_eq!(log.total_elements, 2, "the losing change left no audit entry");
}

#[tokio::test]
async fn list_pages_newest_first_and_filters_by_effective_status() {
    let db = PgElections::new(fresh_database().await);
    let mut ids = Vec::new();
    for i in 0..5 {
        // Starts in the past for the first two: scheduled, they are effectively active.
        let mut e = sample(&format!("Show {i}"), if i < 2 { -1 } else { 1 });
        db.create(&e, &operator(), Utc::now()).await.unwrap();
        if i < 3 {
            e.schedule(Utc::now()).unwrap();
            db.update(&e, AdminAction::Scheduled, &operator(), "", Utc::now())
                .await
                .unwrap();
        }
        ids.push(e.id());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let now = Utc::now();
    let all = db
        .list(None, now, PageRequest { page: 0, size: 2 })
        .await
        .unwrap();
    assert_eq!(all.total_elements, 5);
    assert_eq!(all.total_pages(), 3);
    assert_eq!(
        all.content.iter().map(Election::id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let last = db
        .list(None, now, PageRequest { page: 2, size: 2 })
        .await
        .unwrap();
    assert_eq!(
        last.content.iter().map(Election::id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let db = &db;
    let count = |s| async move {
        db.list(Some(s), now, PageRequest { page: 0, size: 10 })
            .await
            .unwrap()
            .total_elements
    };
    assert_eq!(count(ElectionStatus::Active).await, 2);
    assert_eq!(count(ElectionStatus::Scheduled).await, 1);
    assert_eq!(count(ElectionStatus::Draft).await, 2);
    assert_eq!(count(ElectionStatus::Closed).await, 0);
}
