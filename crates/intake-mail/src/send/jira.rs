//! `[[sink]] type = "jira"`: the Jira REST API (v2 paths, served by Jira Cloud and Jira Data
//! Center). Cloud signs in with the account's email and an API token (basic auth), Data Center
//! with a personal access token (bearer).
//!
//! - A ticket becomes an issue (`POST /rest/api/2/issue`) in the configured project and issue
//!   type, with the summary, the description and the reporter's address, labelled
//!   `intake-<hash of the row's identity>`. Jira has no idempotency keys, so before creating,
//!   the label is searched (`GET /rest/api/2/search?jql=labels=…`): a repeat after a crash finds
//!   the issue it already made instead of making a second one.
//! - Attachments go to `POST /rest/api/2/issue/{key}/attachments` (multipart,
//!   `X-Atlassian-Token: no-check`); a repeated delivery (the row was in flight when it was
//!   interrupted) first lists the issue's attachments ([`Jira::attachments`]) and uploads only
//!   those not there by filename and size; a comment to `POST /rest/api/2/issue/{key}/comment`, its
//!   body ending with a marker (`[intake:<hash>]`) that a repeat finds among the issue's
//!   comments first.
//! - A 4xx is diagnosed from Jira's `errorMessages` and `errors` (a missing or unknown field,
//!   an unknown issue type, no permission, bad credentials) and not retried; 429 and 5xx are.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use super::{SendError, request_failed, retry_after, status_is_transient};

/// How to sign in.
#[derive(Clone)]
pub enum JiraAuth {
    /// Jira Cloud: the account's email and an API token.
    Cloud { email: String, token: SecretString },
    /// Jira Data Center: a personal access token.
    Pat(SecretString),
}

impl std::fmt::Debug for JiraAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cloud { email, .. } => write!(f, "Cloud({email})"),
            Self::Pat(_) => f.write_str("Pat"),
        }
    }
}

/// One Jira site and where issues go.
#[derive(Debug, Clone)]
pub struct Jira {
    pub client: reqwest::Client,
    /// The site's base URL without a trailing slash.
    pub base: String,
    pub auth: JiraAuth,
    pub project: String,
    pub issue_type: String,
}

/// The label / marker derived from an outbox identity.
pub fn tag(identity: &str) -> String {
    let d = sha2::Sha256::digest(identity.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Jira's answer to a failed call as one line, with what it most likely means.
pub fn diagnose(status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut parts: Vec<String> = v["errorMessages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut fields: Vec<(String, String)> = v["errors"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, m)| (k.clone(), m.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    parts.extend(fields.iter().map(|(k, m)| format!("{k}: {m}")));
    if parts.is_empty() {
        parts.push(String::from_utf8_lossy(body).chars().take(300).collect());
    }
    let hint = if fields.iter().any(|(k, _)| k == "issuetype") {
        " — the issue type is unknown in this project: set issue_type to one the project has"
    } else if fields.iter().any(|(k, _)| k == "project") {
        " — the project is unknown or not visible to this account: check jira_project"
    } else if fields
        .iter()
        .any(|(_, m)| m.to_ascii_lowercase().contains("required"))
    {
        " — the project requires a field Intake does not fill: make it optional for this issue type, or give it a default"
    } else if status == 401 {
        " — the credentials were refused: check email and API token (Cloud) or the personal access token (Data Center)"
    } else if status == 403 {
        " — the account lacks permission (Create Issues / Add Comments / Create Attachments in the project)"
    } else if status == 404 {
        " — not found: check url, jira_project, or the issue was deleted"
    } else if fields.is_empty() {
        ""
    } else {
        " — a field's value was refused"
    };
    format!("Jira answered HTTP {status}: {}{hint}", parts.join("; "))
}

impl Jira {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.auth {
            JiraAuth::Cloud { email, token } => {
                let basic = STANDARD.encode(format!("{email}:{}", token.expose_secret()));
                r.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
            }
            JiraAuth::Pat(t) => r.bearer_auth(t.expose_secret()),
        }
    }

    async fn call(
        &self,
        what: &str,
        r: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, SendError> {
        let resp = r.send().await.map_err(|e| request_failed(what, e))?;
        let status = resp.status();
        let after = retry_after(resp.headers());
        let body = crate::http::read_capped(resp, 4 * 1024 * 1024)
            .await
            .map_err(|e| request_failed(what, e))?
            .unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_slice(&body).unwrap_or_default());
        }
        let message = format!("{what}: {}", diagnose(status.as_u16(), &body));
        if status_is_transient(status.as_u16()) {
            Err(SendError::Transient {
                message,
                retry_after: after,
            })
        } else {
            Err(SendError::Permanent(message))
        }
    }

    /// The issue made for `identity` earlier, if any (found by its label).
    pub async fn find(&self, identity: &str) -> Result<Option<String>, SendError> {
        let jql = format!("labels = \"intake-{}\"", tag(identity));
        let v = self
            .call(
                "Jira search",
                self.request(reqwest::Method::GET, "/rest/api/2/search")
                    .query(&[
                        ("jql", jql.as_str()),
                        ("fields", "key"),
                        ("maxResults", "1"),
                    ]),
            )
            .await?;
        Ok(v["issues"][0]["key"].as_str().map(str::to_string))
    }

    /// Create the issue for `identity` (or find the one a previous try made). Returns its key.
    pub async fn create_issue(
        &self,
        identity: &str,
        summary: &str,
        description: &str,
        reporter: &str,
    ) -> Result<String, SendError> {
        if let Some(key) = self.find(identity).await? {
            return Ok(key);
        }
        let body = serde_json::json!({
            "fields": {
                "project": {"key": self.project},
                "issuetype": {"name": self.issue_type},
                "summary": summary.chars().take(250).collect::<String>(),
                "description": format!("{description}\n\nReporter: {reporter}"),
                "labels": [format!("intake-{}", tag(identity))],
            }
        });
        let v = self
            .call(
                "Jira create issue",
                self.request(reqwest::Method::POST, "/rest/api/2/issue")
                    .json(&body),
            )
            .await?;
        v["key"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SendError::Permanent("Jira created an issue but sent no key".into()))
    }

    /// Add a comment (once: a repeat finds its marker among the issue's comments).
    pub async fn add_comment(
        &self,
        issue: &str,
        identity: &str,
        body: &str,
    ) -> Result<(), SendError> {
        let marker = format!("[intake:{}]", tag(identity));
        let v = self
            .call(
                "Jira comments",
                self.request(
                    reqwest::Method::GET,
                    &format!("/rest/api/2/issue/{issue}/comment"),
                )
                .query(&[("maxResults", "1000")]),
            )
            .await?;
        let already = v["comments"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["body"].as_str().is_some_and(|b| b.contains(&marker)))
        });
        if already {
            return Ok(());
        }
        self.call(
            "Jira add comment",
            self.request(
                reqwest::Method::POST,
                &format!("/rest/api/2/issue/{issue}/comment"),
            )
            .json(&serde_json::json!({"body": format!("{body}\n\n{marker}")})),
        )
        .await?;
        Ok(())
    }

    /// The issue's attachments as (filename, size in bytes): what a repeated delivery compares
    /// against before uploading again (`GET /rest/api/2/issue/{key}?fields=attachment`).
    pub async fn attachments(&self, issue: &str) -> Result<Vec<(String, u64)>, SendError> {
        let v = self
            .call(
                "Jira attachments",
                self.request(reqwest::Method::GET, &format!("/rest/api/2/issue/{issue}"))
                    .query(&[("fields", "attachment")]),
            )
            .await?;
        Ok(v["fields"]["attachment"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["filename"].as_str().unwrap_or_default().to_string(),
                            x["size"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Attach a file to an issue.
    pub async fn add_attachment(
        &self,
        issue: &str,
        filename: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<(), SendError> {
        let boundary = format!("intake-{}", tag(filename));
        let name = filename.replace(['"', '\r', '\n'], "_");
        let ctype = content_type.replace(['\r', '\n'], "");
        let mut body = Vec::with_capacity(data.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.call(
            "Jira add attachment",
            self.request(
                reqwest::Method::POST,
                &format!("/rest/api/2/issue/{issue}/attachments"),
            )
            .header("X-Atlassian-Token", "no-check")
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jira_400_errors_are_decoded_with_their_meaning() {
        let d = diagnose(
            400,
            br#"{"errorMessages":[],"errors":{"issuetype":"Specify a valid issue type"}}"#,
        );
        assert!(d.contains("issuetype: Specify a valid issue type"), "{d}");
        assert!(d.contains("issue type is unknown"), "{d}");
        let d = diagnose(
            400,
            br#"{"errorMessages":[],"errors":{"customfield_10010":"Team is required."}}"#,
        );
        assert!(d.contains("requires a field"), "{d}");
        let d = diagnose(
            403,
            br#"{"errorMessages":["You do not have permission"],"errors":{}}"#,
        );
        assert!(
            d.contains("You do not have permission") && d.contains("lacks permission"),
            "{d}"
        );
    }
}
