//! Sending a batch to an InfluxDB-v2-style write API: the Tollgate server's, InfluxDB 2's, VictoriaMetrics'.

use std::time::Duration;

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored: the batch can go.
    Accepted,
    /// Refused for good (malformed, too large): sending it again cannot help.
    Refused(String),
    /// Not now (unreachable, 5xx, a token the server does not accept yet): keep it and try later.
    Retry(String),
}

pub struct Sender {
    agent: ureq::Agent,
    /// The write API's URL, with any query it needs (InfluxDB 2: `org` and `bucket`) but the precision.
    url: String,
    authorization: String,
}

impl Sender {
    /// Writes to a Tollgate server at `server` (its base URL, e.g. `http://tollgate:8080`) with `token`.
    pub fn new(server: &str, token: &str, timeout: Duration) -> Self {
        Sender::to_url(&format!("{}/api/v2/write", server.trim_end_matches('/')), token, timeout)
    }

    /// Writes to the InfluxDB-v2-style write API at `url` (Tollgate, InfluxDB 2 with `?org=…&bucket=…`,
    /// VictoriaMetrics).
    pub fn to_url(url: &str, token: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Sender { agent, url: url.to_owned(), authorization: format!("Token {token}") }
    }

    /// Sends one gzip-compressed batch of line protocol whose timestamps are in `precision`.
    pub fn send(&self, gzipped: &[u8], precision: &str) -> Outcome {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}precision={precision}", self.url);
        let sent = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(gzipped);
        match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    return Outcome::Accepted;
                }
                let body = response.body_mut().read_to_string().unwrap_or_default();
                let why = format!("the server answered {status}: {}", body.trim());
                match status {
                    400 | 413 | 415 | 422 => Outcome::Refused(why),
                    _ => Outcome::Retry(why),
                }
            }
            Err(e) => Outcome::Retry(format!("cannot reach the server: {e}")),
        }
    }
}
