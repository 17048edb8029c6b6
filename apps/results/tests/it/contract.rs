//! The committed OpenAPI document (`contracts/results-service.yaml`) is what
//! the mounted routes generate. Regenerate it with
//! `LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-results --test it contract::`.

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
         LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-results --test it contract::"
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

/// `METHOD path` pairs of an OpenAPI document written by utoipa (two-space
/// indented paths, four-space indented methods), placeholders as `{}`.
fn operations(yaml: &str) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    let mut path: Option<String> = None;
    for line in yaml.lines() {
        if line.starts_with("components:") {
            break;
        }
        if let Some(p) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && p.starts_with('/')
        {
            path = Some(placeholders(p));
        } else if let (Some(p), Some(m)) =
            (&path, line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')))
            && ["get", "post", "put", "patch", "delete"].contains(&m)
        {
            ops.push((m.to_uppercase(), p.clone()));
        }
    }
    ops
}

/// `/a/{electionId}/b` -> `/a/{}/b`.
fn placeholders(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn every_route_the_readme_names_is_in_a_contract() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).expect(p);
    let mut ops = operations(&read("contracts/results-service.yaml"));
    ops.extend(operations(&read("contracts/vote-service.yaml")));
    assert!(ops.len() > 20, "{ops:?}");
    let readme = read("README.md");
    let mut checked = 0;
    for span in readme.split('`').skip(1).step_by(2) {
        let Some((method, path)) = span.split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) {
            continue;
        }
        let path = placeholders(path.split(['?', '[']).next().unwrap_or(path));
        let known = match path.strip_prefix("...") {
            // `.../candidates/{candidateId}`: the end of a route named just before.
            Some(suffix) => ops.iter().any(|(m, p)| m == method && p.ends_with(suffix)),
            None => ops.iter().any(|(m, p)| m == method && *p == path),
        };
        assert!(known, "the README names `{span}`, which no contract has");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} routes found in the README");
}
