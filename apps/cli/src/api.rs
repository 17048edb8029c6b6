//! The services' HTTP APIs as the CLI uses them, with errors that name the
//! fix (which service is down, which variable points at it).

use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use serde_json::{Value, json};

use crate::issuer::{IssuerArgs, claims};

/// Where the services are, and who the CLI acts as.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The results service (admin, results, reconciliation).
    #[arg(long, env = "LIVEVOTE_RESULTS_URL", default_value = "http://127.0.0.1:8082")]
    pub results_url: String,
    /// The ingestion service (votes).
    #[arg(long, env = "LIVEVOTE_INGESTION_URL", default_value = "http://127.0.0.1:8080")]
    pub ingestion_url: String,
    /// A token with elections:admin and audit:read; unset: one is signed by the local issuer.
    #[arg(long, env = "LIVEVOTE_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub issuer: IssuerArgs,
}

/// An election's vote policy on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// How many votes a viewer has: `single` (one), `multi` (up to
    /// --max-votes) or `changeable` (one, replaced by each new vote until
    /// the lines close). Default: single.
    #[arg(long, value_parser = ["single", "multi", "changeable"])]
    pub policy: Option<String>,
    /// With `--policy multi`: votes per viewer, 1 to 100.
    #[arg(long)]
    pub max_votes: Option<u16>,
    /// With `--policy multi`: at most this many of a viewer's votes for one candidate.
    #[arg(long)]
    pub max_per_candidate: Option<u16>,
}

impl PolicyArgs {
    /// `multi` with `max_votes` votes per viewer.
    pub fn multi(max_votes: u16) -> Self {
        Self {
            policy: Some("multi".into()),
            max_votes: Some(max_votes),
            max_per_candidate: None,
        }
    }

    /// The policy's fields of a create request (none for the default).
    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        if let Some(p) = &self.policy {
            fields.insert("policy".into(), json!(p));
        }
        if let Some(n) = self.max_votes {
            fields.insert("maxVotes".into(), json!(n));
        }
        if let Some(n) = self.max_per_candidate {
            fields.insert("maxPerCandidate".into(), json!(n));
        }
        fields
    }
}

/// A client of the results and ingestion services.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub results_url: String,
    pub ingestion_url: String,
    operator: String,
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The body when the status is `want`, else an error quoting the service.
    pub fn expect(self, want: u16, what: &str) -> anyhow::Result<Value> {
        if self.status == want {
            return Ok(self.body);
        }
        let code = self.body["code"].as_str().unwrap_or("?");
        let message = self.body["message"].as_str().unwrap_or("");
        Err(anyhow!("{what}: HTTP {} {code}: {message}", self.status))
    }
}

impl Api {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let operator = match &args.token {
            Some(t) => t.clone(),
            None => args.issuer.issuer().token(&claims(
                "livevote-cli|operator",
                true,
                true,
                Duration::from_secs(12 * 3600),
            )),
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()
                .context("building the HTTP client")?,
            results_url: args.results_url.trim_end_matches('/').to_owned(),
            ingestion_url: args.ingestion_url.trim_end_matches('/').to_owned(),
            operator,
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        service: &str,
        base: &str,
    ) -> anyhow::Result<Reply> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "the {service} service does not answer at {base} ({e}); start the stack with \
                     `livevote stack up`, or point LIVEVOTE_{}_URL at it",
                    service.to_uppercase()
                )
            } else {
                anyhow!("calling the {service} service at {base}: {e}")
            }
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// A call to the results service as the operator.
    pub async fn results(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.results_url))
            .bearer_auth(&self.operator);
        if let Some(b) = body {
            request = request.json(&b);
        }
        self.send(request, "results", &self.results_url).await
    }

    /// Creates an election (DRAFT) and returns it.
    pub async fn create_election(
        &self,
        title: &str,
        candidates: &[&str],
        minutes: i64,
    ) -> anyhow::Result<Value> {
        self.create_election_with(title, candidates, minutes, &PolicyArgs::default())
            .await
    }

    /// Creates an election (DRAFT) with a vote policy.
    pub async fn create_election_with(
        &self,
        title: &str,
        candidates: &[&str],
        minutes: i64,
        policy: &PolicyArgs,
    ) -> anyhow::Result<Value> {
        let now = chrono::Utc::now();
        let mut body = json!({
            "title": title,
            "description": "created by the livevote CLI",
            "startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::minutes(minutes)).to_rfc3339(),
            "candidates": candidates.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
        });
        if let Some(fields) = body.as_object_mut() {
            fields.extend(policy.fields());
        }
        self.results(reqwest::Method::POST, "/api/v1/admin/elections", Some(body))
            .await?
            .expect(201, "creating the election")
    }

    /// Creates an election (DRAFT); its id and its candidates' ids, in the order given.
    pub async fn create_election_ids(
        &self,
        title: &str,
        candidates: &[&str],
        minutes: i64,
    ) -> anyhow::Result<(String, Vec<String>)> {
        self.create_election_ids_with(title, candidates, minutes, &PolicyArgs::default())
            .await
    }

    /// As [`Api::create_election_ids`], with a vote policy.
    pub async fn create_election_ids_with(
        &self,
        title: &str,
        candidates: &[&str],
        minutes: i64,
        policy: &PolicyArgs,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let created = self
            .create_election_with(title, candidates, minutes, policy)
            .await?;
        let id = created["electionId"]
            .as_str()
            .context("the created election has no electionId")?
            .to_owned();
        let ids: Vec<String> = created["candidates"]
            .as_array()
            .context("the created election has no candidates")?
            .iter()
            .filter_map(|c| c["candidateId"].as_str().map(str::to_owned))
            .collect();
        anyhow::ensure!(
            ids.len() == candidates.len(),
            "the election came back with {} candidates instead of {}",
            ids.len(),
            candidates.len()
        );
        Ok((id, ids))
    }

    /// Both services answer their readiness probe, or the error says how to start them.
    pub async fn ensure_ready(&self) -> anyhow::Result<()> {
        for (service, url) in [("results", &self.results_url), ("ingestion", &self.ingestion_url)] {
            match self.http.get(format!("{url}/health/ready")).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => anyhow::bail!(
                    "the {service} service at {url} is not ready ({}): see `livevote stack status`",
                    r.status()
                ),
                Err(e) => anyhow::bail!(
                    "the {service} service does not answer at {url} ({e}): run `livevote stack up` first, \
                     or point LIVEVOTE_{}_URL at it",
                    service.to_uppercase()
                ),
            }
        }
        Ok(())
    }

    /// Moves an election to `status` (SCHEDULED, ACTIVE, CLOSED).
    pub async fn set_status(&self, id: &str, status: &str) -> anyhow::Result<Value> {
        self.results(
            reqwest::Method::PATCH,
            &format!("/api/v1/admin/elections/{id}/status"),
            Some(json!({ "status": status })),
        )
        .await?
        .expect(200, &format!("moving election {id} to {status}"))
    }

    /// Opens a DRAFT or SCHEDULED election at once.
    pub async fn open(&self, id: &str) -> anyhow::Result<Value> {
        let mut e = self
            .results(
                reqwest::Method::GET,
                &format!("/api/v1/admin/elections/{id}"),
                None,
            )
            .await?
            .expect(200, "reading the election")?;
        if e["effectiveStatus"] == "DRAFT" {
            // A window that has already started makes a scheduled election active at once.
            e = self.set_status(id, "SCHEDULED").await?;
        }
        if e["effectiveStatus"] == "ACTIVE" {
            return Ok(e);
        }
        self.set_status(id, "ACTIVE").await
    }

    pub async fn reconciliation(&self, id: &str) -> anyhow::Result<Value> {
        self.results(
            reqwest::Method::GET,
            &format!("/api/v1/audit/elections/{id}/reconciliation"),
            None,
        )
        .await?
        .expect(200, "reading the reconciliation")
    }

    /// Public results (no token needed, sent anyway).
    pub async fn results_of(&self, id: &str) -> anyhow::Result<Value> {
        self.results(reqwest::Method::GET, &format!("/api/v1/results/{id}"), None)
            .await?
            .expect(200, "reading the results")
    }

    /// Casts one vote with a viewer's token; returns status and body.
    pub async fn vote(&self, token: &str, election: &str, candidate: &str) -> anyhow::Result<Reply> {
        let request = self
            .http
            .post(format!("{}/api/v1/votes", self.ingestion_url))
            .bearer_auth(token)
            .json(&json!({ "electionId": election, "candidateId": candidate }));
        self.send(request, "ingestion", &self.ingestion_url).await
    }
}
