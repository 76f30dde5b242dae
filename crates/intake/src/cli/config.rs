//! `intake config export`: the database's integrations and channels (`intake serve`) as TOML
//! `[[integration]]` and `[[channel]]` tables, literal secrets written as `[REDACTED]` (which
//! the loader refuses: put the secret back, or an `env:`/`file:` reference, before loading).

use std::process::ExitCode;

use intake_store::config_store::Kind;

use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Write the database's integrations and channels as TOML to standard output.
    Export,
}

pub async fn run(settings: &Settings, db: &str, c: ConfigCommand) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCommand::Export => export(settings, db).await,
    }
}

async fn export(settings: &Settings, db: &str) -> anyhow::Result<ExitCode> {
    let store = intake_store::Store::connect(db).await?;
    let keys = intake_store::Keyring::from_env_or_file(&settings.config.secret_key_file())?;
    let entries = store.config_entries(&keys).await?;
    store.close().await;
    print!("{}", to_toml(&entries)?);
    Ok(ExitCode::SUCCESS)
}

/// The entries as a TOML document (paused channels get a comment).
pub fn to_toml(entries: &[intake_store::config_store::ConfigEntry]) -> anyhow::Result<String> {
    let mut doc = toml::value::Table::new();
    for (kind, key) in [
        (Kind::Integration, "integration"),
        (Kind::Channel, "channel"),
    ] {
        let tables: Vec<toml::Value> = entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                let body = crate::serve::redact::for_export(kind, &e.body);
                toml::Value::try_from(body)
            })
            .collect::<Result<_, _>>()?;
        if !tables.is_empty() {
            doc.insert(key.into(), toml::Value::Array(tables));
        }
    }
    let mut out =
        String::from("# intake config export: integrations and channels from the database\n");
    let paused: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == Kind::Channel && e.paused)
        .map(|e| e.name.as_str())
        .collect();
    if !paused.is_empty() {
        out += &format!("# paused channels: {}\n", paused.join(", "));
    }
    out += &toml::to_string(&toml::Value::Table(doc))?;
    Ok(out)
}
