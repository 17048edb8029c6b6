//! The committed OpenAPI document (`contracts/results-service.yaml`) is what
//! the mounted routes generate. Regenerate it with
//! `LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-results --test contract`.

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = livevote_results::http::openapi_yaml().expect("the document renders as YAML");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/results-service.yaml"
    );
    if std::env::var_os("LIVEVOTE_UPDATE_CONTRACTS").is_some() {
        std::fs::write(path, &generated).expect("write the contract");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "contracts/results-service.yaml differs from the routes; regenerate it with \
         LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-results --test contract"
    );
    // The document describes what on-air vendors, admins and auditors rely on.
    for needle in [
        "/api/v1/results/{electionId}:",
        "/api/v1/results/live/{electionId}:",
        "/api/v1/results/{electionId}/stream:",
        "/api/v1/results/{electionId}/export.csv:",
        "/api/v1/results/statistics/{electionId}:",
        "/api/v1/admin/elections:",
        "/api/v1/admin/elections/{electionId}/status:",
        "/api/v1/admin/elections/{electionId}/candidates/{candidateId}:",
        "/api/v1/audit/elections/{electionId}/reconciliation:",
        "/api/v1/audit/elections/{electionId}/log:",
        "/api/v1/votes/{voteId}/receipt:",
        "electionTitle",
        "totalVotes",
        "ELECTION_LOCKED",
        "INVALID_TRANSITION",
        "text/event-stream",
        "bearer",
    ] {
        assert!(generated.contains(needle), "{needle} missing from the contract");
    }
}
