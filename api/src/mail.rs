//! Emailing notifications: every few seconds the mailer takes the notifications not yet emailed, renders
//! each from `templates/email` (an HTML and a plain-text part), and sends it through lettre: into an outbox
//! folder (the embedded default; nothing leaves the machine) or through an SMTP relay with STARTTLS and
//! authentication. An approval request carries signed one-time approve and reject links. A message the
//! transport refuses is tried again next round, and given up on (logged) after [`MAX_ATTEMPTS`].

use crate::config::EmailConfig;
use crate::state::AppState;
use crate::web::links::Link;
use crate::web::{render, when};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_workflows::approval::Decision;
use tollgate_workflows::notify::{self, Delivery, NotificationKind};

/// Attempts after which a message is given up on.
pub const MAX_ATTEMPTS: i64 = 10;

/// Where messages go.
pub enum Transport {
    Outbox(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends notifications by email.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl Mailer {
    /// The mailer `config` describes; `None` when email is off. The outbox folder is created here.
    pub fn new(config: &EmailConfig, data_dir: &Path) -> anyhow::Result<Option<Mailer>> {
        use anyhow::Context as _;
        let from: Mailbox = config.from.parse().context("email.from is not an address")?;
        let transport = match config.transport.as_str() {
            "off" => return Ok(None),
            "smtp" => {
                let host = config.smtp_host.as_str();
                let builder = match config.smtp_security.as_str() {
                    "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
                    "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
                };
                let mut builder = builder.port(config.smtp_port).timeout(Some(Duration::from_secs(30)));
                if !config.smtp_username.is_empty() {
                    let password = config.smtp_password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
                    builder = builder.credentials(Credentials::new(config.smtp_username.clone(), password));
                }
                Transport::Smtp(builder.build())
            }
            _ => {
                let dir = if config.outbox_dir.as_os_str().is_empty() {
                    data_dir.join("outbox")
                } else {
                    config.outbox_dir.clone()
                };
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the outbox {}", dir.display()))?;
                Transport::Outbox(AsyncFileTransport::<Tokio1Executor>::new(dir))
            }
        };
        Ok(Some(Mailer { transport, from }))
    }

    /// Where the messages go, for the start-up banner.
    pub fn describe(config: &EmailConfig, data_dir: &Path) -> String {
        match config.transport.as_str() {
            "off" => "off".to_owned(),
            "smtp" => format!("SMTP via {}:{} ({})", config.smtp_host, config.smtp_port, config.smtp_security),
            _ if config.outbox_dir.as_os_str().is_empty() => format!("files in {}", data_dir.join("outbox").display()),
            _ => format!("files in {}", config.outbox_dir.display()),
        }
    }

    async fn send(&self, message: Message) -> Result<(), String> {
        match &self.transport {
            Transport::Outbox(t) => t.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
            Transport::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }

    /// Emails what waits; returns how many were sent.
    pub async fn round(&self, state: &AppState) -> anyhow::Result<usize> {
        let mut sent = 0;
        for d in notify::undelivered(&state.db, 100).await? {
            let id = d.notification.id.clone();
            let Some(address) = d.email.as_deref().and_then(|e| e.parse::<lettre::Address>().ok()) else {
                // Nobody to send it to: it stays readable in the dashboard and the API.
                notify::mark_delivered(&state.db, &id).await?;
                continue;
            };
            let outcome = match compose(state, &d).await {
                Ok((subject, text, html)) => {
                    let to = Mailbox::new(Some(d.username.clone()), address);
                    match Message::builder()
                        .from(self.from.clone())
                        .to(to)
                        .subject(subject)
                        .multipart(MultiPart::alternative_plain_html(text, html))
                    {
                        Ok(m) => self.send(m).await,
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    notify::mark_delivered(&state.db, &id).await?;
                    sent += 1;
                }
                Err(e) => {
                    let attempts = notify::delivery_failed(&state.db, &id).await?;
                    if attempts >= MAX_ATTEMPTS {
                        tracing::error!(notification = %id, attempts, error = %e, "giving up emailing a notification");
                        notify::mark_delivered(&state.db, &id).await?;
                    } else {
                        tracing::warn!(notification = %id, attempts, error = %e, "emailing a notification failed; trying again");
                    }
                }
            }
        }
        Ok(sent)
    }
}

/// The subject, plain text and HTML of a notification's email.
async fn compose(state: &AppState, d: &Delivery) -> Result<(String, String, String), String> {
    let n = &d.notification;
    let base = &state.web.base_url;
    let pages = render::global();
    let (template, data) = match (n.kind, n.entity_type.as_str()) {
        (NotificationKind::ApprovalRequested, "change") => {
            let c = tollgate_workflows::change::get_change(&state.db, &n.entity_id).await.map_err(|e| e.to_string())?;
            let expires = (state.db.clock().now() + state.web.link_ttl).unix_timestamp();
            let link = |decision| Link {
                change_id: c.id.clone(),
                revision: c.revision,
                approver_id: d.recipient_id.clone(),
                decision,
                expires,
            };
            let approve = link(Decision::Approve).url(state).await.map_err(|e| e.message().to_owned())?;
            let reject = link(Decision::Reject).url(state).await.map_err(|e| e.message().to_owned())?;
            let services =
                crate::web::changes::impacted_services(&state.db, &c).await.map_err(|e| e.message().to_owned())?;
            let data = json!({
                "username": d.username, "subject": n.subject,
                "change": {"reference": c.reference, "title": c.title, "description": c.description, "kind": c.kind.as_str(),
                           "requester": c.requester, "revision": c.revision,
                           "window": format!("{} – {}", when(c.window_start), when(c.window_end)),
                           "risk": {"score": c.risk.score, "level": format!("{:?}", c.risk.level).to_lowercase()},
                           "factors": c.risk.factors.iter().filter(|f| f.points > 0).map(|f| json!({"points": f.points, "detail": f.detail})).collect::<Vec<_>>()},
                "services": services,
                "approve_url": approve, "reject_url": reject, "page_url": format!("{base}/changes/{}", c.id),
                "expires": when(time::OffsetDateTime::from_unix_timestamp(expires).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)),
            });
            ("mail/approval", data)
        }
        _ => {
            let path = match n.entity_type.as_str() {
                "change" => format!("/changes/{}", n.entity_id),
                "incident" => format!("/incidents/{}", n.entity_id),
                _ => "/inbox".to_owned(),
            };
            let data: Value = json!({"username": d.username, "subject": n.subject, "url": format!("{base}{path}"),
                                     "at": when(n.created_at), "breached": n.kind == NotificationKind::IncidentBreached});
            ("mail/notice", data)
        }
    };
    let text = pages.text(&format!("{template}.txt"), &data)?;
    let html = pages.text(&format!("{template}.html"), &data)?;
    Ok((format!("[Tollgate] {}", n.subject), text, html))
}

/// Every `interval`: emails the notifications waiting.
pub fn spawn_mailer(
    mailer: Mailer,
    state: AppState,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = crate::background::Ticks::new(interval, shutdown);
        while ticks.next().await {
            if let Err(e) = mailer.round(&state).await {
                tracing::warn!(error = %e, "the mailer's round failed; trying again next round");
            }
        }
    })
}
