//! The operator CLI `livevote`: brings the local stack up and down, issues
//! local tokens, runs the demo, and drives elections, results,
//! reconciliation, the dead-letter queue, migrations and tally rebuilds.
//! `main.rs` parses [`Cli`] and hands it to [`run`].

pub mod api;
mod demo;
mod embedded;
pub mod issuer;
pub mod ops;
mod stack;
mod view;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The livevote operator CLI.
///
/// Start here: `livevote stack up` brings PostgreSQL, Redis, the local SQS endpoint, a local
/// token issuer and the three services up; `livevote demo` then runs a show end to end.
#[derive(Debug, Parser)]
#[command(name = "livevote", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The local stack: dependencies, queues, migrations and the three services.
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Prints a token signed by the local development issuer (local stack only).
    Token(issuer::TokenArgs),
    /// The local development token issuer (its JWKS endpoint); `stack up` starts it.
    Issuer {
        #[command(subcommand)]
        action: IssuerAction,
    },
    /// Runs a show: an election, a simulated audience, the close, the reconciliation, the result.
    Demo(demo::DemoArgs),
    /// Lists, creates, opens, closes and reveals elections (results service admin API).
    Elections {
        #[command(subcommand)]
        action: ops::ElectionsAction,
    },
    /// Watches an election's results as live terminal bars.
    Results {
        #[command(subcommand)]
        action: ops::ResultsAction,
    },
    /// Prints an election's reconciliation; exits 1 when accepted votes are missing, 3 while pending.
    Reconcile(ops::ReconcileArgs),
    /// Inspects and replays the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: ops::DlqAction,
    },
    /// Applies the database migrations (idempotent).
    Migrate(ops::DatabaseArgs),
    /// Creates the vote queue and its dead-letter queue with the redrive policy (idempotent).
    Queues {
        #[command(subcommand)]
        action: ops::QueuesAction,
    },
    /// Live tallies maintenance.
    Tallies {
        #[command(subcommand)]
        action: ops::TalliesAction,
    },
}

#[derive(Debug, Subcommand)]
enum StackAction {
    /// Starts what is missing and waits until every service is ready; prints the URLs.
    Up(stack::StackArgs),
    /// Stops what `stack up` started (the three services and the token issuer).
    Down(stack::StackArgs),
    /// Shows what runs and whether it is ready.
    Status(stack::StackArgs),
}

#[derive(Debug, Subcommand)]
enum IssuerAction {
    /// Serves the JWKS of the development key pair until interrupted.
    Serve(IssuerServe),
}

#[derive(Debug, Args)]
struct IssuerServe {
    /// Address to serve on.
    #[arg(long, env = "LIVEVOTE_ISSUER_LISTEN", default_value = "127.0.0.1:8089")]
    listen: std::net::SocketAddr,
}

/// Runs one command; errors are printed with their causes and give exit code 1.
pub async fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Stack { action } => match action {
            StackAction::Up(a) => stack::up(&a).await,
            StackAction::Down(a) => stack::down(&a).await,
            StackAction::Status(a) => stack::status(&a).await,
        },
        Command::Token(a) => issuer::token(&a),
        Command::Issuer {
            action: IssuerAction::Serve(a),
        } => issuer::serve(a.listen).await,
        Command::Demo(a) => demo::run(&a).await,
        Command::Elections { action } => ops::elections(action).await,
        Command::Results { action } => ops::results(action).await,
        Command::Reconcile(a) => ops::reconcile(&a).await,
        Command::Dlq { action } => ops::dlq(action).await,
        Command::Migrate(a) => ops::migrate(&a).await,
        Command::Queues { action } => ops::queues(action).await,
        Command::Tallies { action } => ops::tallies(action).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("livevote: {error:#}");
            ExitCode::FAILURE
        }
    }
}
