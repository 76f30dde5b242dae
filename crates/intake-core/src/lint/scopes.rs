//! Scope-composition lint (RC1, G1, G2) of a Microsoft `scopes` override, following docs/troubleshooting.md, "Scopes"
//! and §1.6: bare OpenID Connect scopes, one resource per token, `.default` alone per resource,
//! `{resource}/.default` only for client credentials, Exchange permissions on the Exchange
//! resource and Graph permissions on Graph.

use std::collections::BTreeSet;

use crate::diagnosis::{Finding, RootCause};
use crate::preset::cloud::{Cloud, Grant};
use crate::preset::scopes::{
    OFFLINE_ACCESS, ScopeResource, is_exo_permission, is_graph_mail_permission, is_oidc,
    parse_scope, scope_resource,
};

/// RC1 / G1: the scope composition rules of docs/troubleshooting.md, "Scopes".
pub(super) fn lint_microsoft_scopes(
    cloud: Cloud,
    grant: Grant,
    scopes: &[String],
    out: &mut Vec<Finding>,
) {
    let path = |i: usize| format!("integration.scopes[{i}]");
    let mut resources: BTreeSet<ScopeResource> = BTreeSet::new();
    let mut has_offline_access = false;
    for (i, raw) in scopes.iter().enumerate() {
        let scope = raw.trim();
        if scope.is_empty() {
            continue;
        }
        let parsed = parse_scope(scope);
        let resource = scope_resource(scope);
        match (parsed.prefix, is_oidc(parsed.permission)) {
            (None, true) if parsed.permission.eq_ignore_ascii_case(OFFLINE_ACCESS) => {
                has_offline_access = true;
            }
            (Some(_), true) => out.push(Finding::error(
                Some(RootCause::Rc1),
                path(i),
                format!(
                    "{scope:?} is not the OpenID Connect scope: write `{}` bare, without a \
                     resource prefix (prefixed, the token response carries no refresh token)",
                    parsed.permission
                ),
            )),
            _ => {}
        }
        if resource != ScopeResource::Oidc {
            resources.insert(resource.clone());
        }
        if resource == ScopeResource::Graph && is_exo_permission(parsed.permission) {
            out.push(Finding::error(
                Some(RootCause::Rc1),
                path(i),
                format!(
                    "{scope:?} asks Microsoft Graph for an Exchange permission: the token's \
                     audience is Graph and IMAP/POP/SMTP answer AUTHENTICATE failed; write \
                     \"{}/{}\"",
                    cloud.exo_resource(),
                    parsed.permission
                ),
            ));
        }
        if resource == ScopeResource::Exo && is_graph_mail_permission(parsed.permission) {
            out.push(Finding::error(
                Some(RootCause::G1),
                path(i),
                format!(
                    "{scope:?} asks Exchange Online for a Graph permission: the token's audience \
                     is Exchange and Graph answers 401 InvalidAuthenticationToken (Invalid \
                     audience); write {:?}",
                    graph_scope(cloud, parsed.permission)
                ),
            ));
        }
        if resource == ScopeResource::Graph
            && parsed.prefix.is_none()
            && !matches!(cloud, Cloud::Worldwide | Cloud::Gcc)
        {
            out.push(Finding::warning(
                Some(RootCause::G2),
                path(i),
                format!(
                    "bare Graph scope {scope:?} in cloud = {:?}: whether bare names resolve to \
                     this cloud's Graph is unverified; write {:?}",
                    cloud.as_str(),
                    graph_scope(cloud, parsed.permission)
                ),
            ));
        }
        if !grant.is_delegated() && parsed.permission != ".default" {
            out.push(Finding::error(
                Some(RootCause::Rc1),
                path(i),
                format!(
                    "grant = \"client_credentials\" must request `{{resource}}/.default` only, \
                     not {scope:?} (AADSTS70011); use \"{}/.default\" or \"{}/.default\"",
                    cloud.exo_app_resource(),
                    cloud.graph_root()
                ),
            ));
        }
    }
    if resources.len() > 1 {
        let names: Vec<_> = resources.iter().map(ScopeResource::label).collect();
        out.push(Finding::error(
            Some(RootCause::Rc1),
            "integration.scopes",
            format!(
                "scopes span several resources ({}): one access token has one audience, so it \
                 works for only one of them (AADSTS700022); use one integration per resource",
                names.join(", ")
            ),
        ));
    }
    for resource in &resources {
        let same: Vec<&str> = scopes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty() && &scope_resource(s) == resource)
            .collect();
        let has_default = same.iter().any(|s| parse_scope(s).permission == ".default");
        if has_default && same.len() > 1 {
            out.push(Finding::error(
                Some(RootCause::Rc1),
                "integration.scopes",
                format!(
                    "`.default` cannot be combined with other {} scopes ({}) in one request \
                     (AADSTS70011): keep either `.default` or the named permissions",
                    resource.label(),
                    same.join(" ")
                ),
            ));
        }
    }
    if grant.is_delegated() && !has_offline_access {
        out.push(Finding::error(
            Some(RootCause::Rc1),
            "integration.scopes",
            format!(
                "`offline_access` is missing: without it no refresh token is returned and the \
                 mailbox must be signed in again about every hour (grant = {:?})",
                grant.as_str()
            ),
        ));
    }
}

pub(super) fn graph_scope(cloud: Cloud, permission: &str) -> String {
    match cloud {
        Cloud::Worldwide | Cloud::Gcc => permission.to_string(),
        _ => format!("{}/{permission}", cloud.graph_root()),
    }
}
