//! The committed OpenAPI document (`contracts/vote-service.yaml`) is what
//! the mounted routes generate. Regenerate it with
//! `LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-ingestion --test it contract::`.

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = livevote_ingestion::http::openapi_yaml().expect("the document renders as YAML");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/vote-service.yaml");
    if std::env::var_os("LIVEVOTE_UPDATE_CONTRACTS").is_some() {
        std::fs::write(path, &generated).expect("write the contract");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "contracts/vote-service.yaml differs from the routes; regenerate it with \
         LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-ingestion --test it contract::"
    );
    // The document describes what clients rely on.
    for needle in [
        "/api/v1/votes:",
        "/api/v1/votes/status/{electionId}/me:",
        "/health/ready:",
        "DUPLICATE_VOTE",
        "Idempotency-Key",
        "bearer",
    ] {
        assert!(generated.contains(needle), "{needle} missing from the contract");
    }
}
