//! Token checks before connecting: the token's `aud`, `scp`/`roles` and `iss` against the
//! protocol and cloud (RC1, G1, G2, RC9), and the signed-in identity against the mailbox (RC11,
//! RC3). Claims are for diagnosis only (docs/troubleshooting.md, "Token claims"): absent claims (opaque tokens) give no
//! finding, and an unrecognised audience is a warning.

use super::scopes::graph_scope;
use crate::diagnosis::{Finding, RootCause};
use crate::preset::cloud::{Cloud, Protocol};
use crate::preset::hosts::{
    EXO_APP_ID, GRAPH_APP_ID, HostKind, classify_host, clouds_label, host_of,
};
use crate::preset::scopes::{app_permission, delegated_permission};
use crate::token::TokenIdentity;

/// What a token's audience names.
enum Audience {
    Graph(Option<&'static [Cloud]>),
    Exo(Option<&'static [Cloud]>),
    Unknown,
}

fn classify_audience(aud: &str) -> Audience {
    let aud = aud.trim().trim_end_matches('/');
    if aud.eq_ignore_ascii_case(GRAPH_APP_ID) {
        return Audience::Graph(None);
    }
    if aud.eq_ignore_ascii_case(EXO_APP_ID) {
        return Audience::Exo(None);
    }
    match host_of(aud).as_deref().and_then(classify_host) {
        Some((Some(HostKind::Graph), clouds)) => Audience::Graph(Some(clouds)),
        Some((Some(HostKind::Exo), clouds)) => Audience::Exo(Some(clouds)),
        _ => Audience::Unknown,
    }
}

/// Checks a token's claims against the protocol and cloud it is about to be used with (RC1, G1,
/// G2, RC9). Absent claims are not findings.
pub fn check_token_for_protocol(
    identity: &TokenIdentity,
    protocol: Protocol,
    cloud: Cloud,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut audience_wrong = false;
    if let Some(aud) = identity
        .audience
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    {
        let audience = classify_audience(aud);
        let finding = match (protocol, audience) {
            (Protocol::Graph, Audience::Graph(clouds)) => {
                clouds.filter(|c| !c.contains(&cloud)).map(|c| {
                    Finding::error(
                        Some(RootCause::G2),
                        "token.aud",
                        format!(
                            "the token is for the {} Graph ({aud}) but cloud = {:?} uses {}: get \
                             the token from this cloud",
                            clouds_label(c),
                            cloud.as_str(),
                            cloud.graph_root()
                        ),
                    )
                })
            }
            (Protocol::Graph, Audience::Exo(_)) => Some(Finding::error(
                Some(RootCause::G1),
                "token.aud",
                format!(
                    "the token's audience is Exchange Online ({aud}), so Graph answers 401 \
                     InvalidAuthenticationToken (Invalid audience): request Graph scopes \
                     ({}) for the Graph connection",
                    graph_scope(cloud, delegated_permission(Protocol::Graph))
                ),
            )),
            (Protocol::Graph, Audience::Unknown) => Some(Finding::warning(
                Some(RootCause::G1),
                "token.aud",
                format!(
                    "the token's audience {aud:?} is not Microsoft Graph ({} or \
                     {GRAPH_APP_ID}); Graph may reject it as Invalid audience",
                    cloud.graph_root()
                ),
            )),
            (_, Audience::Exo(clouds)) => clouds.filter(|c| !c.contains(&cloud)).map(|c| {
                Finding::error(
                    Some(RootCause::Rc9),
                    "token.aud",
                    format!(
                        "the token is for the {} Exchange Online ({aud}) but cloud = {:?} \
                             uses {}: get the token from this cloud",
                        clouds_label(c),
                        cloud.as_str(),
                        cloud.exo_resource()
                    ),
                )
            }),
            (_, Audience::Graph(_)) => Some(Finding::error(
                Some(RootCause::Rc1),
                "token.aud",
                format!(
                    "the token's audience is Microsoft Graph ({aud}), which {} does not accept \
                     (AUTHENTICATE failed): request \"{}/{}\" instead of Graph scopes",
                    protocol.as_str().to_ascii_uppercase(),
                    cloud.exo_resource(),
                    delegated_permission(protocol)
                ),
            )),
            (_, Audience::Unknown) => Some(Finding::warning(
                Some(RootCause::Rc1),
                "token.aud",
                format!(
                    "the token's audience {aud:?} is not Exchange Online ({} or {EXO_APP_ID}); \
                     {} may reject it",
                    cloud.exo_resource(),
                    protocol.as_str().to_ascii_uppercase()
                ),
            )),
        };
        if let Some(f) = finding {
            audience_wrong = f.is_error();
            out.push(f);
        }
    }
    if !audience_wrong {
        check_permissions(identity, protocol, &mut out);
    }
    if let Some(iss) = identity.issuer.as_deref()
        && let Some((_, clouds)) = host_of(iss).as_deref().and_then(classify_host)
        && !clouds.contains(&cloud)
    {
        out.push(Finding::error(
            Some(RootCause::Rc9),
            "token.iss",
            format!(
                "the token was issued by {iss}, a {} authority, but cloud = {:?} signs in at {}",
                clouds_label(clouds),
                cloud.as_str(),
                cloud.authority()
            ),
        ));
    }
    out
}

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|s| s.eq_ignore_ascii_case(wanted))
}

fn check_permissions(identity: &TokenIdentity, protocol: Protocol, out: &mut Vec<Finding>) {
    let read_only = ["Mail.Read", "Mail.Read.Shared"];
    if !identity.scopes.is_empty() {
        let needed = delegated_permission(protocol);
        let ok = has(&identity.scopes, needed)
            || (protocol == Protocol::Graph && has(&identity.scopes, "Mail.ReadWrite.Shared"));
        if ok {
            return;
        }
        if protocol == Protocol::Graph && read_only.iter().any(|p| has(&identity.scopes, p)) {
            out.push(Finding::warning(
                Some(RootCause::Rc1),
                "token.scp",
                "the token can only read mail (Mail.Read): marking read, moving or deleting after \
                 ingestion fails; request Mail.ReadWrite",
            ));
            return;
        }
        out.push(Finding::error(
            Some(RootCause::Rc1),
            "token.scp",
            format!(
                "the token's delegated scopes ({}) lack {needed}, which {} needs: add it to the \
                 app's API permissions and to the requested scopes, then authorize again",
                identity.scopes.join(" "),
                protocol.as_str().to_ascii_uppercase()
            ),
        ));
    } else if !identity.roles.is_empty() {
        let needed = app_permission(protocol);
        if has(&identity.roles, needed) {
            return;
        }
        if protocol == Protocol::Graph && has(&identity.roles, "Mail.Read") {
            out.push(Finding::warning(
                Some(RootCause::Rc1),
                "token.roles",
                "the app can only read mail (application Mail.Read): post-actions fail; grant \
                 application Mail.ReadWrite with admin consent",
            ));
            return;
        }
        out.push(Finding::error(
            Some(RootCause::Rc1),
            "token.roles",
            format!(
                "the app-only token's roles ({}) lack {needed}: add the application permission \
                 {needed} under API permissions and grant admin consent",
                identity.roles.join(" ")
            ),
        ));
    }
}

/// Compares who the token belongs to with the mailbox it will open (RC11, RC3). `None` when they
/// match or when the token names nobody (app-only or opaque tokens).
pub fn check_identity_matches_mailbox(identity: &TokenIdentity, mailbox: &str) -> Option<Finding> {
    let user = identity.username.as_deref()?.trim();
    let mailbox = mailbox.trim();
    if user.is_empty() || mailbox.is_empty() || user.eq_ignore_ascii_case(mailbox) {
        return None;
    }
    let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    let same_domain = domain(user).is_some() && domain(user) == domain(mailbox);
    let cause = if same_domain {
        RootCause::Rc3
    } else {
        RootCause::Rc11
    };
    Some(Finding::error(
        Some(cause),
        "token.upn",
        format!(
            "the token belongs to {user} but the mailbox is {mailbox}: if {mailbox} is a shared \
             mailbox or another user's, {user} needs Full Access delegation \
             (Add-MailboxPermission -Identity {mailbox} -User {user} -AccessRights FullAccess); \
             otherwise the browser authorized the wrong account: authorize again and pick \
             {mailbox}"
        ),
    ))
}
