//! Request forms: a new VM, a resize, limits, a migration. Each makes a draft change request whose page
//! shows its risk, plan and rollback before the requester submits it.

use super::{base, moment, with, WebError, WebResult, WebUser};
use crate::auth::RequestChanges;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tollgate_control::inventory;
use tollgate_control::simulated::SIM_IMAGES;
use tollgate_workflows::change::{self, ChangeKind, ChangeSpec, Operation};
use tollgate_workflows::cmdb::CiKind;
use tollgate_workflows::freeze::Window;
use tollgate_workflows::text::{Description, Name};
use tollgate_workflows::ValidationError;

/// The forms there are: (path, title).
const FORMS: [(&str, &str); 4] = [
    ("vm", "Request a new VM"),
    ("resize", "Resize a VM"),
    ("quota", "Set a VM's limits"),
    ("migrate", "Migrate a VM"),
];

fn local(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(super::LOCAL_TIME).unwrap_or_default()
}

fn options(cis: &[tollgate_workflows::cmdb::Ci]) -> Vec<Value> {
    cis.iter()
        .filter(|c| c.state != "retired")
        .map(|c| {
            let size = match (c.vcpus, c.memory_mib) {
                (Some(v), Some(m)) => format!(" ({v} vCPU, {} GiB)", m / 1024),
                _ => String::new(),
            };
            json!({"id": c.id, "label": format!("{}{size}", c.name)})
        })
        .collect()
}

/// The form page, with `values` already typed in and `error` when they were refused.
async fn form_page(
    state: &AppState,
    user: &WebUser,
    form: &str,
    values: Value,
    error: Option<String>,
) -> WebResult<Response> {
    let title = FORMS.iter().find(|(f, _)| *f == form).map(|(_, t)| *t).ok_or_else(|| {
        WebError::new(
            StatusCode::NOT_FOUND,
            format!("no request form {form:?}: there are vm, resize, quota and migrate"),
        )
    })?;
    let db = &state.db;
    let now = state.db.clock().now();
    let page = with(
        base(user, title),
        json!({
            "form": form,
            "is": {"vm": form == "vm", "resize": form == "resize", "quota": form == "quota", "migrate": form == "migrate"},
            "forms": FORMS.iter().map(|(f, t)| json!({"form": f, "title": t, "current": *f == form})).collect::<Vec<_>>(),
            "images": SIM_IMAGES,
            "services": options(&inventory::all_of(db, CiKind::Service).await?),
            "hosts": options(&inventory::all_of(db, CiKind::Host).await?),
            "vms": options(&inventory::all_of(db, CiKind::Vm).await?),
            "defaults": {"start": local(now), "end": local(now + time::Duration::hours(4))},
            "values": values,
            "error": error,
        }),
    );
    Ok(super::render::page("request", &page))
}

pub async fn form(State(state): State<AppState>, user: WebUser, Path(form): Path<String>) -> WebResult<Response> {
    user.require::<RequestChanges>()?;
    let blank =
        RequestForm { vcpus: "2".into(), memory_gib: "4".into(), disk_gib: "20".into(), ..RequestForm::default() };
    form_page(&state, &user, &form, serde_json::to_value(blank).unwrap_or_default(), None).await
}

/// Every field of every form; each form reads its own.
#[derive(Deserialize, Default, serde::Serialize)]
#[serde(default)]
pub struct RequestForm {
    title: String,
    description: String,
    kind: String,
    window_start: String,
    window_end: String,
    name: String,
    image: String,
    vcpus: String,
    memory_gib: String,
    disk_gib: String,
    service_id: String,
    host_id: String,
    vm_id: String,
    cpu_quota_pct: String,
    disk_read_mbps: String,
    disk_write_mbps: String,
    disk_iops: String,
    net_mbit: String,
    to_host_id: String,
    live: String,
    /// "yes" when the new VM is to be a container.
    container: String,
}

fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, ValidationError> {
    text.trim().parse().map_err(|_| ValidationError::new(field, "must be a whole number"))
}

fn optional<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, ValidationError> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        number(field, text).map(Some)
    }
}

fn required<'a>(field: &str, text: &'a str) -> Result<&'a str, ValidationError> {
    let t = text.trim();
    if t.is_empty() {
        Err(ValidationError::new(field, "is required"))
    } else {
        Ok(t)
    }
}

impl RequestForm {
    fn operation(&self, form: &str) -> Result<Operation, ValidationError> {
        let id = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        Ok(match form {
            "vm" => Operation::Provision {
                name: required("name", &self.name)?.to_owned(),
                image: required("image", &self.image)?.to_owned(),
                vcpus: number("vcpus", &self.vcpus)?,
                memory_mib: number::<i64>("memory_gib", &self.memory_gib)?.saturating_mul(1024),
                disk_gib: number("disk_gib", &self.disk_gib)?,
                service_id: id(&self.service_id),
                host_id: id(&self.host_id),
                container: self.container == "yes",
            },
            "resize" => Operation::Resize {
                vm_id: required("vm_id", &self.vm_id)?.to_owned(),
                vcpus: number("vcpus", &self.vcpus)?,
                memory_mib: number::<i64>("memory_gib", &self.memory_gib)?.saturating_mul(1024),
            },
            "quota" => Operation::SetQuota {
                vm_id: required("vm_id", &self.vm_id)?.to_owned(),
                cpu_quota_pct: optional("cpu_quota_pct", &self.cpu_quota_pct)?,
                disk_read_bytes_per_sec: optional::<u64>("disk_read_mbps", &self.disk_read_mbps)?
                    .map(|m| m.saturating_mul(1_000_000)),
                disk_write_bytes_per_sec: optional::<u64>("disk_write_mbps", &self.disk_write_mbps)?
                    .map(|m| m.saturating_mul(1_000_000)),
                disk_iops: optional("disk_iops", &self.disk_iops)?,
                net_mbit_per_sec: optional("net_mbit", &self.net_mbit)?,
            },
            "migrate" => Operation::Migrate {
                vm_id: required("vm_id", &self.vm_id)?.to_owned(),
                to_host_id: required("to_host_id", &self.to_host_id)?.to_owned(),
                live: self.live != "cold",
            },
            _ => return Err(ValidationError::new("form", "no such form")),
        })
    }

    fn spec(&self, form: &str) -> Result<ChangeSpec, ValidationError> {
        let op = self.operation(form)?;
        let title = if self.title.trim().is_empty() {
            match &op {
                Operation::Provision { name, container: true, .. } => format!("New container {name}"),
                Operation::Provision { name, .. } => format!("New VM {name}"),
                Operation::Resize { .. } => "Resize a VM".to_owned(),
                Operation::SetQuota { .. } => "Set a VM's limits".to_owned(),
                _ => "Migrate a VM".to_owned(),
            }
        } else {
            self.title.trim().to_owned()
        };
        let window = Window::new(moment("window_start", &self.window_start)?, moment("window_end", &self.window_end)?)
            .map_err(|e| ValidationError::new("window_end", e.message))?;
        let kind = match self.kind.as_str() {
            "" | "normal" => ChangeKind::Normal,
            "standard" => ChangeKind::Standard,
            "emergency" => ChangeKind::Emergency,
            _ => return Err(ValidationError::new("kind", "must be standard, normal or emergency")),
        };
        let spec = ChangeSpec {
            kind,
            title: Name::parse("title", &title)?,
            description: Description::parse("description", &self.description)?,
            ci_ids: Vec::new(),
            operations: vec![op],
            window,
        };
        spec.check()?;
        Ok(spec)
    }
}

/// Makes the draft change and opens its page; refused input comes back on the form, with what was typed.
pub async fn submit(
    State(state): State<AppState>,
    user: WebUser,
    Path(form): Path<String>,
    axum::Form(values): axum::Form<RequestForm>,
) -> WebResult<Response> {
    user.require::<RequestChanges>()?;
    let refused = |message: String| async {
        let typed = serde_json::to_value(&values).unwrap_or_default();
        let mut page = form_page(&state, &user, &form, typed, Some(message)).await?;
        *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<Response, WebError>(page)
    };
    let spec = match values.spec(&form) {
        Ok(s) => s,
        Err(e) => return refused(format!("{}: {}", e.field, e.message)).await,
    };
    match change::create_change(&state.db, &user.audit, &user.principal, spec).await {
        Ok(c) => {
            tracing::info!(change = %c.reference, by = %user.principal.username, "change requested on the dashboard");
            Ok(Redirect::to(&format!("/changes/{}", c.id)).into_response())
        }
        Err(e) => {
            let e = WebError::from(e);
            if e.status().is_client_error() {
                refused(e.message().to_owned()).await
            } else {
                Err(e)
            }
        }
    }
}
