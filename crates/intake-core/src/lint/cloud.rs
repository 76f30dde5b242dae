//! Mixed-cloud lint (RC9, G2): every Microsoft host an integration names (authority, endpoint
//! overrides, Graph root, scope prefixes) must belong to the configured cloud. Hosts that are not
//! Microsoft's are not judged.

use super::url_keys;
use crate::diagnosis::{Finding, RootCause};
use crate::integration::IntegrationConfig;
use crate::preset::cloud::Cloud;
use crate::preset::hosts::{HostKind, classify_host, clouds_label, host_of};
use crate::preset::scopes::parse_scope;

/// RC9 / G2: every Microsoft host named in the table must belong to the configured cloud.
pub(super) fn lint_clouds(cfg: &IntegrationConfig, out: &mut Vec<Finding>) {
    let cloud = cfg.cloud();
    for (key, value) in url_keys(cfg) {
        let Some(url) = value else { continue };
        let graph_key = key == "graph_url";
        let path = format!("integration.{key}");
        if let Some(f) = wrong_cloud(cloud, url, url, None, graph_key, &path, key) {
            out.push(f);
        }
    }
    for (i, scope) in cfg.scopes.iter().flatten().enumerate() {
        let parsed = parse_scope(scope);
        let Some(prefix) = parsed.prefix else {
            continue;
        };
        let path = format!("integration.scopes[{i}]");
        let permission = Some(parsed.permission);
        if let Some(f) = wrong_cloud(cloud, prefix, scope, permission, false, &path, "scope") {
            out.push(f);
        }
    }
}

/// A finding when `url`'s host is a Microsoft host of another cloud than `cloud`. `shown` is
/// the configured value; `permission` (for scopes) is appended to the suggested replacement.
fn wrong_cloud(
    cloud: Cloud,
    url: &str,
    shown: &str,
    permission: Option<&str>,
    graph_key: bool,
    path: &str,
    what: &str,
) -> Option<Finding> {
    let host = host_of(url)?;
    let (kind, clouds) = classify_host(&host)?;
    if clouds.contains(&cloud) {
        return None;
    }
    let (cause, expected) = if graph_key || kind == Some(HostKind::Graph) {
        (RootCause::G2, cloud.graph_root())
    } else if kind == Some(HostKind::Exo) {
        (RootCause::Rc9, cloud.exo_resource())
    } else {
        (RootCause::Rc9, cloud.authority())
    };
    let replacement = match permission {
        Some(p) => format!("{expected}/{p}"),
        None => expected.to_string(),
    };
    Some(Finding::error(
        Some(cause),
        path,
        format!(
            "{what} {shown:?} names {host}, a {} host, but cloud = {:?}: tokens and app \
             registrations do not cross clouds; use {replacement} (or set `cloud` to the \
             tenant's cloud)",
            clouds_label(clouds),
            cloud.as_str(),
        ),
    ))
}
