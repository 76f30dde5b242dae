//! SASL XOAUTH2 and OAUTHBEARER (RFC 7628) for IMAP and POP3.
//!
//! Written here because they are a few lines each and the failure path matters: on a rejected
//! token the server sends a base64 JSON challenge (`{"status":"401",…}` / `{"status":
//! "invalid_token",…}`) that names the reason, and the client must answer it (an empty response
//! for XOAUTH2, `%x01` for OAUTHBEARER) before the server sends its final `NO`. [`OAuthSasl`]
//! keeps that challenge so the error Intake reports carries the server's own words.

/// The XOAUTH2 initial response: `user=…^Aauth=Bearer …^A^A`.
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// The OAUTHBEARER initial response: `n,a=…,^Ahost=…^Aport=…^Aauth=Bearer …^A^A`.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> String {
    format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
}

/// Which OAuth SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::XOAuth2 => "XOAUTH2",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// One OAuth SASL exchange: the first challenge gets the initial response, a second one is the
/// server's error, kept in [`OAuthSasl::server_error`] and answered so the server can finish.
pub struct OAuthSasl {
    mechanism: Mechanism,
    initial: String,
    round: u32,
    /// The decoded error challenge, if the server sent one.
    pub server_error: Option<String>,
}

impl std::fmt::Debug for OAuthSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSasl")
            .field("mechanism", &self.mechanism)
            .field("server_error", &self.server_error)
            .finish_non_exhaustive()
    }
}

impl OAuthSasl {
    pub fn new(mechanism: Mechanism, user: &str, host: &str, port: u16, token: &str) -> Self {
        let initial = match mechanism {
            Mechanism::XOAuth2 => xoauth2(user, token),
            Mechanism::OAuthBearer => oauthbearer(user, host, port, token),
        };
        Self {
            mechanism,
            initial,
            round: 0,
            server_error: None,
        }
    }

    /// The response to the next challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Vec<u8> {
        self.round += 1;
        if self.round == 1 && challenge.is_empty() {
            return self.initial.as_bytes().to_vec();
        }
        if self.round == 1 {
            // A server that sends a non-empty first challenge still expects the initial response.
            return self.initial.as_bytes().to_vec();
        }
        self.server_error = Some(String::from_utf8_lossy(challenge).into_owned());
        match self.mechanism {
            Mechanism::XOAuth2 => Vec::new(),
            Mechanism::OAuthBearer => vec![1],
        }
    }
}

impl async_imap::Authenticator for &mut OAuthSasl {
    type Response = Vec<u8>;
    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        self.respond(challenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_specifications() {
        assert_eq!(xoauth2("a@b", "T"), "user=a@b\x01auth=Bearer T\x01\x01");
        assert_eq!(
            oauthbearer("a@b", "h", 993, "T"),
            "n,a=a@b,\x01host=h\x01port=993\x01auth=Bearer T\x01\x01"
        );
    }

    #[test]
    fn keeps_the_servers_error_challenge_and_answers_it() {
        let mut s = OAuthSasl::new(Mechanism::OAuthBearer, "a@b", "h", 993, "T");
        assert!(s.respond(b"").starts_with(b"n,a=a@b,"));
        assert_eq!(s.respond(br#"{"status":"invalid_token"}"#), vec![1]);
        assert_eq!(
            s.server_error.as_deref(),
            Some(r#"{"status":"invalid_token"}"#)
        );
        let mut x = OAuthSasl::new(Mechanism::XOAuth2, "a@b", "h", 993, "T");
        x.respond(b"");
        assert!(x.respond(br#"{"status":"401"}"#).is_empty());
    }
}
