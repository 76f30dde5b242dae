//! `intake admin create USER` (password from standard input) and `intake admin token USER`
//! (prints a new API token once, as the last word of its output; only its hash is stored).

use std::io::BufRead as _;
use std::process::ExitCode;

use crate::serve::auth;

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create an administrator, or set a new password for an existing one (ends their
    /// sessions). The password is read from standard input (one line).
    Create { user: String },
    /// Create a new API token for USER and print it once (as the last word of the output).
    Token { user: String },
}

pub async fn run(db: &str, c: AdminCommand) -> anyhow::Result<ExitCode> {
    let store = intake_store::Store::connect(db).await?;
    let result = match c {
        AdminCommand::Create { user } => create(&store, &user).await,
        AdminCommand::Token { user } => token(&store, &user).await,
    };
    store.close().await;
    result
}

fn check_user_name(user: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !user.is_empty()
            && user.len() <= 64
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c)),
        "user name {user:?}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
    );
    Ok(())
}

async fn create(store: &intake_store::Store, user: &str) -> anyhow::Result<ExitCode> {
    check_user_name(user)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(
        password.chars().count() >= auth::MIN_PASSWORD_CHARS,
        "the password (read from standard input) must have at least {} characters",
        auth::MIN_PASSWORD_CHARS
    );
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await?
        .map_err(|e| anyhow::anyhow!(e))?;
    let new = store.upsert_admin_user(user, &hash).await?;
    let action = if new {
        "admin_created"
    } else {
        "admin_password_set"
    };
    store
        .audit(
            &format!("cli:{user}"),
            action,
            &format!("user:{user}"),
            serde_json::json!({}),
        )
        .await?;
    println!(
        "administrator {user} {}",
        if new {
            "created"
        } else {
            "updated: new password set, sessions ended"
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn token(store: &intake_store::Store, user: &str) -> anyhow::Result<ExitCode> {
    check_user_name(user)?;
    let token = auth::random_secret().map_err(|e| anyhow::anyhow!(e.message))?;
    store
        .add_api_token(user, &auth::hash_secret(&token))
        .await?;
    store
        .audit(
            &format!("cli:{user}"),
            "token_created",
            &format!("user:{user}"),
            serde_json::json!({}),
        )
        .await?;
    println!(
        "API token for {user} (shown once; send it as `Authorization: Bearer TOKEN`): {token}"
    );
    Ok(ExitCode::SUCCESS)
}
