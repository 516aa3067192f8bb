//! Administration: users (and adding one), groups, approval policies, alert rules and freeze windows (and
//! adding them).

use super::{base, moment, when, with, WebError, WebResult, WebUser};
use crate::auth::{ManageAccounts, ManageProcesses, ReadAccounts};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Redirect;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use tollgate_workflows::accounts::{self, Email, NewUser, Password, Role, RoleSet, UserQuery, Username};
use tollgate_workflows::alert::{self, Condition, RuleSpec, Severity};
use tollgate_workflows::approval;
use tollgate_workflows::freeze::{self, FreezeQuery, FreezeSpec, Window};
use tollgate_workflows::text::{Description, Name, PageRequest};
use tollgate_workflows::ValidationError;

pub async fn page(State(state): State<AppState>, user: WebUser) -> WebResult<Response> {
    user.require::<ReadAccounts>()?;
    let db = &state.db;
    let all = PageRequest::new(Some(500), None)?;
    let users = accounts::list_users(db, &UserQuery::default(), all).await?;
    let groups = accounts::list_groups(db, None, all).await?;
    let names: BTreeMap<&str, &str> = users.items.iter().map(|u| (u.id.as_str(), u.username.as_str())).collect();
    let policies = approval::list_policies(db).await?;
    let rules = alert::list_rules(db, None, all).await?;
    let freezes = freeze::list_freezes(db, &FreezeQuery::default(), all).await?;
    let scopes = tollgate_control::inventory::all_of(db, tollgate_workflows::cmdb::CiKind::Region).await?;
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    Ok(super::render::page(
        "admin",
        &with(
            base(&user, "Administration"),
            json!({
                "users": users.items.iter().map(|u| json!({
                    "username": u.username, "display_name": u.display_name, "email": u.email.clone().unwrap_or_default(),
                    "roles": u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "), "disabled": u.disabled,
                })).collect::<Vec<_>>(),
                "groups": groups.items.iter().map(|g| json!({
                    "name": g.name, "roles": g.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                    "members": g.members.iter().map(|m| names.get(m.as_str()).copied().unwrap_or(m.as_str())).collect::<Vec<_>>().join(", "),
                })).collect::<Vec<_>>(),
                "policies": policies.iter().map(|p| json!({
                    "name": p.name, "kinds": p.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                    "stages": p.stages.iter().map(|s| format!("{} ({})", s.name, s.groups.join(", "))).collect::<Vec<_>>().join(" → "),
                })).collect::<Vec<_>>(),
                "rules": rules.items.iter().map(|r| json!({
                    "name": r.name, "metric": format!("{}.{}", r.body.measurement, r.body.field),
                    "condition": serde_json::to_string(&r.body.condition).unwrap_or_default(),
                    "severity": format!("{:?}", r.body.severity).to_lowercase(), "enabled": r.enabled,
                })).collect::<Vec<_>>(),
                "freezes": freezes.items.iter().map(|f| json!({
                    "name": f.name, "from": when(f.starts_at), "to": when(f.ends_at), "description": f.description,
                })).collect::<Vec<_>>(),
                "roles": roles,
                "scopes": scopes.iter().map(|s| json!({"id": s.id, "name": s.name})).collect::<Vec<_>>(),
                "can": {"accounts": user.principal.roles.permits(<ManageAccounts as crate::auth::Permission>::ROLES.unwrap_or(&[])),
                        "processes": user.principal.roles.permits(<ManageProcesses as crate::auth::Permission>::ROLES.unwrap_or(&[]))},
            }),
        ),
    ))
}

struct UserForm {
    username: String,
    display_name: Option<String>,
    email: Option<String>,
    password: String,
    /// Roles: the form's checkboxes, one field each.
    roles: Vec<String>,
}

pub async fn create_user(
    State(state): State<AppState>,
    user: WebUser,
    axum::extract::RawForm(raw): axum::extract::RawForm,
) -> WebResult<Redirect> {
    user.require::<ManageAccounts>()?;
    // Checkboxes repeat the field name: read them all.
    let mut form = UserForm {
        username: String::new(),
        display_name: None,
        email: None,
        password: String::new(),
        roles: Vec::new(),
    };
    for (k, v) in form_urlencoded::parse(&raw) {
        match k.as_ref() {
            "username" => form.username = v.into_owned(),
            "display_name" => form.display_name = Some(v.into_owned()),
            "email" => form.email = Some(v.into_owned()).filter(|e| !e.trim().is_empty()),
            "password" => form.password = v.into_owned(),
            "roles" => form.roles.push(v.into_owned()),
            _ => {}
        }
    }
    let roles = form
        .roles
        .iter()
        .map(|r| Role::parse(r).ok_or_else(|| ValidationError::new("roles", format!("no role {r:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let new = NewUser {
        username: Username::parse(&form.username)?,
        display_name: Name::parse(
            "display_name",
            form.display_name.as_deref().filter(|d| !d.trim().is_empty()).unwrap_or(&form.username),
        )?,
        email: form.email.as_deref().map(Email::parse).transpose()?,
        password: Password::parse("password", &form.password)?,
        roles: RoleSet::new(roles),
    };
    accounts::create_user(&state.db, &user.audit, new).await?;
    Ok(Redirect::to("/admin"))
}

#[derive(Deserialize)]
pub struct FreezeForm {
    name: String,
    description: Option<String>,
    scope_ci_id: String,
    starts_at: String,
    ends_at: String,
}

pub async fn create_freeze(
    State(state): State<AppState>,
    user: WebUser,
    axum::Form(form): axum::Form<FreezeForm>,
) -> WebResult<Redirect> {
    user.require::<ManageProcesses>()?;
    let window = Window::new(moment("starts_at", &form.starts_at)?, moment("ends_at", &form.ends_at)?)
        .map_err(|e| ValidationError::new("ends_at", e.message))?;
    let spec = FreezeSpec {
        name: Name::parse("name", &form.name)?,
        description: Description::parse("description", form.description.as_deref().unwrap_or(""))?,
        scope_ci_id: form.scope_ci_id,
        window,
    };
    freeze::create_freeze(&state.db, &user.audit, spec).await?;
    Ok(Redirect::to("/admin"))
}

#[derive(Deserialize)]
pub struct RuleForm {
    name: String,
    measurement: String,
    field: String,
    /// `above` or `below`.
    direction: String,
    threshold: f64,
    recovery: f64,
    for_secs: u64,
    severity: String,
}

pub async fn create_alert_rule(
    State(state): State<AppState>,
    user: WebUser,
    axum::Form(form): axum::Form<RuleForm>,
) -> WebResult<Redirect> {
    user.require::<ManageProcesses>()?;
    let condition = match form.direction.as_str() {
        "above" => Condition::Above { threshold: form.threshold, recovery: form.recovery },
        "below" => Condition::Below { threshold: form.threshold, recovery: form.recovery },
        _ => return Err(WebError::bad_request("direction must be above or below")),
    };
    let severity: Severity = serde_json::from_value(serde_json::Value::String(form.severity))
        .map_err(|_| WebError::bad_request("severity must be critical, major, minor or warning"))?;
    let spec = RuleSpec::new(
        &form.name,
        "",
        &form.measurement,
        &form.field,
        BTreeMap::new(),
        condition,
        form.for_secs,
        300,
        severity,
        true,
    )?;
    alert::create_rule(&state.db, &user.audit, spec).await?;
    Ok(Redirect::to("/admin"))
}
