//! The example service.
//!
//! ```text
//! repo-http-example                          serve on HTTP_ADDR (default 127.0.0.1:8080)
//! repo-http-example create-user NAME EMAIL   create a user and print an API key for it
//! ```
//!
//! The database is `DATABASE_URL` (unset: `smtk.sqlite3` in the working directory),
//! with every setting of the library's configuration table.

use repo_http_example::{install_metrics, serve, AppState};
use smtk_repo::{AsyncStore, NewApiKey, NewUser, RepoError};
use std::process::ExitCode;

/// The password hash of users created here: a PHC-shaped value of no real algorithm,
/// so no password ever matches it. The service authenticates with API keys only.
const NO_PASSWORD: &str = "$no-password$api-keys-only$0";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["serve"] => run_server().await,
        ["create-user", name, email] => create_user(name, email).await,
        _ => {
            eprintln!(
                "usage: repo-http-example [serve]\n       repo-http-example create-user NAME EMAIL"
            );
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server() -> Result<(), Box<dyn std::error::Error>> {
    // Before the store opens, so the pool's connection gauges start at its first one.
    let metrics = install_metrics();
    let db = AsyncStore::open_from_env().await?;
    let addr = std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        backend = %db.store().backend(),
        "listening"
    );
    let state = AppState { db, metrics };
    serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Creates the user (or finds it by name) and a fresh API key, and prints the key's
/// secret on standard output: the only time it is shown.
async fn create_user(name: &str, email: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = AsyncStore::open_from_env().await?;
    let new = NewUser::new(name, email, NO_PASSWORD);
    let user = match db.users(move |users| users.create(&new)).await {
        Ok(user) => user,
        Err(RepoError::AlreadyExists { .. }) => {
            let name = name.to_owned();
            db.users(move |users| users.get_by_username(&name)).await?
        }
        Err(e) => return Err(e.into()),
    };
    let key_name = format!("cli-{}", smtk_repo::now().format("%Y%m%dT%H%M%S%.6f"));
    let new_key = NewApiKey::new(user.id, key_name);
    let created = db.api_keys(move |keys| keys.create(&new_key)).await?;
    eprintln!(
        "user #{} {}: API key {} (expires {})",
        user.id,
        user.username,
        created.key.name,
        created
            .key
            .expires_at
            .map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d").to_string()),
    );
    println!("{}", created.secret.expose());
    Ok(())
}
