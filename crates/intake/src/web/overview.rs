//! `GET /`: every channel with its state (OK / paused / failing since … with the error and its
//! root cause), last successful fetch, messages in the last 24 h, backlog, and messages per
//! hour over the last 7 days as an inline SVG chart. htmx refreshes the table every 10 s (the
//! same page, its table selected); without JavaScript the page is reloaded.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Layout, PageError, chart, fmt, render};
use crate::serve::AppState;
use crate::serve::api::config;
use crate::serve::auth::Principal;

pub struct ChannelRow {
    pub name: String,
    /// `ok`, `paused`, `failing`, `stopped`: also the CSS class.
    pub state: String,
    pub state_text: String,
    pub error: Option<String>,
    pub last_fetch: String,
    pub day: i64,
    pub backlog: String,
    pub chart: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    channels: Vec<ChannelRow>,
}

async fn rows(state: &AppState) -> Result<Vec<ChannelRow>, PageError> {
    let now = intake_store::now();
    let since = (now.div_euclid(3600) - chart::HOURS as i64 + 1) * 3600;
    let activity = state.store.hourly_activity(since).await?;
    let channels = config::list_channels(State(state.clone())).await?.0;
    let mut out = Vec::with_capacity(channels.len());
    for c in channels {
        let st = config::channel_status(State(state.clone()), Path(c.name.clone()))
            .await?
            .0;
        let hours: Vec<(i64, i64)> = activity
            .iter()
            .filter(|(ch, _, _)| *ch == c.name)
            .map(|(_, h, n)| (*h, *n))
            .collect();
        let counts = chart::per_hour(now, &hours);
        let day = counts[chart::HOURS - 24..].iter().sum();
        let (class, text) = match st.state.as_str() {
            "running" => ("ok", "OK".to_string()),
            "paused" => ("paused", "Paused".to_string()),
            "failing" => (
                "failing",
                match st.failing_since {
                    Some(t) => format!("Failing since {} ({})", fmt::time(t), fmt::ago(t, now)),
                    None => "Failing".into(),
                },
            ),
            _ => ("stopped", "Not running on any node".to_string()),
        };
        out.push(ChannelRow {
            chart: chart::hourly_svg(&c.name, &counts),
            name: c.name,
            state: class.into(),
            state_text: text,
            error: if class == "failing" {
                st.last_error
            } else {
                None
            },
            last_fetch: st
                .last_success_at
                .map(|t| format!("{} ({})", fmt::time(t), fmt::ago(t, now)))
                .unwrap_or_else(|| "never".into()),
            day,
            backlog: st
                .backlog
                .map(|b| b.to_string())
                .unwrap_or_else(|| "not known".into()),
        });
    }
    Ok(out)
}

/// `GET /`.
pub async fn page(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, PageError> {
    let channels = rows(&state).await?;
    let layout = Layout::new(&state, &who, "Overview", "/").await;
    Ok(render(StatusCode::OK, &OverviewPage { layout, channels }))
}
