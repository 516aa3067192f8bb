//! Notifications: what the processes have to tell people. Raised inside the transaction of the event that
//! causes them, read by their recipient over the API, and delivered by the mailer.

use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult};
use crate::store::{AuditContext, Db, Deferred, Filter, Param, WriteTx, ROWS_PER_INSERT};
use crate::text::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use time::OffsetDateTime;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A change waits for your vote.
    ApprovalRequested,
    /// A change you requested moved on (submitted, approved, rejected, scheduled, started, finished).
    ChangeUpdated,
    /// An incident was assigned to you, or moved on while it is yours.
    IncidentUpdated,
    /// An incident you hold missed an SLA target.
    IncidentBreached,
}

impl NotificationKind {
    fn as_str(self) -> &'static str {
        match self {
            NotificationKind::ApprovalRequested => "approval_requested",
            NotificationKind::ChangeUpdated => "change_updated",
            NotificationKind::IncidentUpdated => "incident_updated",
            NotificationKind::IncidentBreached => "incident_breached",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        use NotificationKind::*;
        [ApprovalRequested, ChangeUpdated, IncidentUpdated, IncidentBreached].into_iter().find(|k| k.as_str() == s)
    }
}

/// A notification as its recipient sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Notification {
    pub id: String,
    pub kind: NotificationKind,
    pub entity_type: String,
    pub entity_id: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub read_at: Option<OffsetDateTime>,
}

#[derive(FromRow)]
struct NotificationRow {
    id: String,
    kind: String,
    entity_type: String,
    entity_id: String,
    subject: String,
    created_at: i64,
    read_at: Option<i64>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(r: NotificationRow) -> Result<Self, Self::Error> {
        Ok(Notification {
            kind: NotificationKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Internal(format!("stored notification {} has a bad kind", r.id)))?,
            id: r.id,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            subject: r.subject,
            created_at: from_millis(r.created_at),
            read_at: r.read_at.map(from_millis),
        })
    }
}

/// Raises one notification per recipient (duplicates in `recipients` count once), in `tx`.
pub(crate) async fn raise(
    tx: &mut WriteTx<'_>,
    recipients: &[String],
    kind: NotificationKind,
    entity_type: &str,
    entity_id: &str,
    subject: &str,
) -> StoreResult<()> {
    let mut sent: Vec<&str> = Vec::new();
    for r in recipients {
        if !sent.contains(&r.as_str()) {
            sent.push(r);
        }
    }
    let now = to_millis(tx.now());
    for chunk in sent.chunks(ROWS_PER_INSERT) {
        // Sent with the commit: an id and a recipient per row, what the notification says shared.
        let shared: Vec<Param> =
            vec![kind.as_str().into(), entity_type.into(), entity_id.into(), subject.into(), now.into()];
        let rows = chunk.iter().map(|r| vec![uuid::Uuid::new_v4().to_string().into(), (*r).into()]);
        tx.defer(Deferred::insert_rows(
            "INSERT INTO notifications (id, recipient_id, kind, entity_type, entity_id, subject, created_at)",
            shared,
            rows,
        ));
    }
    Ok(())
}

/// The notifications of `user_id`, newest first; only unread ones with `unread_only`.
pub async fn notifications_of(
    db: &Db,
    user_id: &str,
    unread_only: bool,
    page: PageRequest,
) -> StoreResult<Page<Notification>> {
    let mut f = Filter::new();
    f.text("recipient_id", "=", user_id);
    if unread_only {
        f.raw("read_at IS NULL");
    }
    let rows: Page<NotificationRow> = f
        .page(
            db.pool(),
            "id, kind, entity_type, entity_id, subject, created_at, read_at",
            "notifications",
            "created_at DESC, id",
            page,
        )
        .await?;
    rows.try_map(Notification::try_from)
}

/// Marks a notification read; to anyone but its recipient it does not exist.
pub async fn mark_read(db: &Db, ctx: &AuditContext, user_id: &str, id: &str) -> StoreResult<()> {
    let mut tx = db.write_locking(ctx, &format!("notification:{id}")).await?;
    let done =
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE id = $2 AND recipient_id = $3 AND read_at IS NULL")
            .bind(to_millis(tx.now()))
            .bind(if id.contains('\0') { "" } else { id })
            .bind(user_id)
            .execute(tx.conn())
            .await?;
    if done.rows_affected() == 0 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE id = $1 AND recipient_id = $2")
            .bind(if id.contains('\0') { "" } else { id })
            .bind(user_id)
            .fetch_one(tx.conn())
            .await?;
        if n == 0 {
            return Err(StoreError::not_found("notification", id));
        }
        return Ok(());
    }
    tx.audit("notification.read", "notification", id, None::<&()>, Some(&serde_json::json!({"read": true}))).await?;
    tx.commit().await?;
    Ok(())
}

/// A notification waiting to be emailed, with its recipient's address (none: the account has no email).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub notification: Notification,
    pub recipient_id: String,
    pub username: String,
    pub email: Option<String>,
    /// Earlier attempts that failed.
    pub attempts: i64,
}

#[derive(FromRow)]
struct DeliveryRow {
    #[sqlx(flatten)]
    notification: NotificationRow,
    recipient_id: String,
    username: String,
    email: Option<String>,
    delivery_attempts: i64,
}

/// Up to `limit` notifications not yet emailed, oldest first.
pub async fn undelivered(db: &Db, limit: i64) -> StoreResult<Vec<Delivery>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT n.id, n.kind, n.entity_type, n.entity_id, n.subject, n.created_at, n.read_at, n.recipient_id, \
         u.username, u.email, n.delivery_attempts FROM notifications n JOIN users u ON u.id = n.recipient_id \
         WHERE n.delivered_at IS NULL ORDER BY n.created_at, n.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Delivery {
                notification: Notification::try_from(r.notification)?,
                recipient_id: r.recipient_id,
                username: r.username,
                email: r.email,
                attempts: r.delivery_attempts,
            })
        })
        .collect()
}

/// Records that a notification was emailed (or that there is nothing to send it to, or that it was given
/// up on): the mailer does not take it again.
pub async fn mark_delivered(db: &Db, id: &str) -> StoreResult<()> {
    let ctx = AuditContext::system("mailer");
    let mut tx = db.write_rows(&ctx).await?;
    sqlx::query("UPDATE notifications SET delivered_at = $1 WHERE id = $2 AND delivered_at IS NULL")
        .bind(to_millis(tx.now()))
        .bind(id)
        .execute(tx.conn())
        .await?;
    tx.commit().await
}

/// Counts a failed attempt to email a notification; it is tried again on the mailer's next round.
pub async fn delivery_failed(db: &Db, id: &str) -> StoreResult<i64> {
    let ctx = AuditContext::system("mailer");
    let mut tx = db.write_rows(&ctx).await?;
    sqlx::query("UPDATE notifications SET delivery_attempts = delivery_attempts + 1 WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT delivery_attempts FROM notifications WHERE id = $1")
        .bind(id)
        .fetch_one(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(n)
}
