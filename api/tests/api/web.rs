//! The web dashboard driven as a browser would (cookies, forms, redirects): sign-in and out, every page
//! rendering in strict mode over a populated world, every form refusing a post without its CSRF token, a VM
//! requested and approved from the inbox, and approval emails whose links work once and never for an
//! edited change.

use crate::changes::{change, world};
use crate::support::{TestApp, USER_PASSWORD};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use tollgate_api::web::render::TEMPLATES;

/// A page as the browser got it.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub html: String,
}

impl Page {
    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let at = self.html.find("name=\"csrf\" value=\"").expect("the page has a form with a CSRF token");
        let rest = &self.html[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    #[track_caller]
    pub fn assert_shows(&self, text: &str) -> &Self {
        assert!(self.html.contains(text), "the page ({}) does not show {text:?}:\n{}", self.status, self.html);
        self
    }
}

/// A browser: a cookie jar over the in-process router.
pub struct Browser<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Browser { app, cookies: BTreeMap::new() }
    }

    pub async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(fields) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    s.append_pair(k, v);
                }
                Body::from(s.finish())
            }
            None => Body::empty(),
        };
        let r = self.app.send_raw(req.body(body).unwrap()).await;
        for c in r.headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let location = r.headers.get(header::LOCATION).map(|l| l.to_str().unwrap().to_owned());
        Page { status: r.status, location, html: r.text() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    /// Posts `fields` with the CSRF token of `from`, as the form on that page would.
    pub async fn submit(&mut self, from: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = from.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.send(Method::POST, path, Some(&all)).await
    }

    pub async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let login = self.get("/login").await;
        let r =
            self.submit(&login, "/login", &[("username", username), ("password", password), ("next", "/inbox")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "sign-in as {username}: {}", r.html);
        self.get("/inbox").await
    }
}

#[tokio::test]
async fn signing_in_needs_the_right_password_and_signing_out_ends_the_session() {
    let w = world().await;
    let mut b = Browser::new(&w.app);
    let r = b.get("/inbox").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/login?next=%2Finbox"));
    let login = b.get("/login").await;
    let r = b.submit(&login, "/login", &[("username", "rita"), ("password", "not her password")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    r.assert_shows("Wrong username or password.");
    // Only a path on this server is followed after signing in.
    let r = b
        .submit(&login, "/login", &[("username", "rita"), ("password", USER_PASSWORD), ("next", "//evil.example/")])
        .await;
    assert_eq!(r.location.as_deref(), Some("/inbox"));
    let inbox = b.get("/inbox").await;
    inbox.assert_shows("Signed in as <strong id=\"signed-in-as\">rita</strong>");
    let session = b.cookies["tg_session"].clone();
    let r = b.submit(&inbox, "/logout", &[]).await;
    assert_eq!(r.location.as_deref(), Some("/login"));
    assert!(!b.cookies.contains_key("tg_session"));
    // The session's token is revoked, not merely forgotten by this browser.
    b.cookies.insert("tg_session".into(), session);
    assert_eq!(b.get("/inbox").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_form_refuses_a_post_without_its_csrf_token_and_nothing_happens() {
    let w = world().await;
    let id = w.request(change("normal", "stop db", crate::changes::stop(&w.vm))).await;
    let mut b = Browser::new(&w.app);
    b.sign_in("admin", crate::support::ADMIN_PASSWORD).await;
    let posts = [
        "/login".to_owned(),
        "/logout".to_owned(),
        format!("/changes/{id}/events"),
        format!("/changes/{id}/vote"),
        "/requests/vm".to_owned(),
        "/requests/resize".to_owned(),
        "/requests/quota".to_owned(),
        "/requests/migrate".to_owned(),
        "/incidents/some-incident/events".to_owned(),
        "/admin/users".to_owned(),
        "/admin/freeze-windows".to_owned(),
        "/admin/alert-rules".to_owned(),
        "/email/approval".to_owned(),
    ];
    let fields =
        [("event", "submit"), ("decision", "approve"), ("username", "mallory"), ("password", "mallory-password-1")];
    for path in &posts {
        let r = b.send(Method::POST, path, Some(&fields)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} without a token: {}", r.html);
        r.assert_shows("security token");
        let mut forged = vec![("csrf", "0123abcd")];
        forged.extend_from_slice(&fields);
        let r = b.send(Method::POST, path, Some(&forged)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with a forged token");
    }
    assert_eq!(w.state(&id).await, "draft", "no event fired");
    let users = w.app.get("/api/v1/users?q=mallory", &w.app.admin_token).await;
    assert_eq!(users.body["total"], 0, "no user made");
    // A token is bound to its browser and session: another browser's does not pass.
    let mut other = Browser::new(&w.app);
    let theirs = other.sign_in("rita", USER_PASSWORD).await;
    let r = b.submit(&theirs, &format!("/changes/{id}/events"), &[("event", "submit")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // And every form in every template carries the token.
    for (name, text) in TEMPLATES {
        for form in text.split("<form").skip(1) {
            let head = &form[..form.find('>').unwrap()];
            if head.contains("method=\"post\"") {
                let body = &form[..form.find("</form>").unwrap_or(form.len())];
                assert!(body.contains("name=\"csrf\""), "a form of template {name} has no CSRF field: <form{head}>");
            }
        }
    }
}

#[tokio::test]
async fn every_page_renders_in_strict_mode_over_a_populated_world() {
    let w = world().await;
    let approver = w.app.user_with_roles("petra", &["approver"]).await;
    w.app.join_group("change-approvers", &approver).await;
    let id = w.request(change("normal", "stop db", crate::changes::stop(&w.vm))).await;
    w.to_approval(&id).await;
    // A conflicting change on the same VM in the same window, an incident, a freeze, a rule, metrics.
    let other = w.request(change("normal", "start db", json!([{"op": "start", "vm_id": w.vm}]))).await;
    let r = w
        .app
        .post(
            "/api/v1/incidents",
            &w.operator,
            json!({"title": "db slow", "impact": "high", "urgency": "high", "ci_ids": [w.vm]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let incident = r.body["id"].as_str().unwrap().to_owned();
    let now = time::OffsetDateTime::now_utc();
    let r = w
        .app
        .post(
            "/api/v1/freeze-windows",
            &w.manager,
            json!({"name": "year end", "scope_ci_id": w.region,
                   "starts_at": (now + time::Duration::days(2)).format(&time::format_description::well_known::Rfc3339).unwrap(),
                   "ends_at": (now + time::Duration::days(3)).format(&time::format_description::well_known::Rfc3339).unwrap()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let at = now.unix_timestamp();
    let lines: String = (0..30)
        .map(|m| {
            let t = at - 60 * m;
            format!(
                "vm,vm=db-1,host=hv-1 cpu_pct={}.5,balloon_rss_kib=2048i,balloon_current_kib=4096i {t}\n\
                 cpu,host=hv-1,cpu=cpu-total usage_idle=70 {t}\nmem,host=hv-1 used_percent=40 {t}\n",
                10 + m
            )
        })
        .collect();
    let r = w.app.send_bytes(Method::POST, "/api/v2/write?precision=s", Some(&w.operator), None, lines).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    while tollgate_workflows::metrics::rollup::roll_up(&w.app.db).await.unwrap() > 0 {}

    let cluster = w.app.get(&format!("/api/v1/cis/{}", w.host), &w.requester).await.body["parent_id"].clone();
    w.app
        .ci(json!({"kind": "host", "name": "lxc-7", "parent_id": cluster, "hypervisor": "lxc",
            "vcpus": 8, "memory_mib": 16384, "disk_gib": 100}))
        .await;

    let mut admin = Browser::new(&w.app);
    admin.sign_in("admin", crate::support::ADMIN_PASSWORD).await;
    let pages = [
        ("/changes".to_owned(), "CHG-000001"),
        (format!("/changes/{id}"), "Stop VM db-1"),
        (format!("/changes/{id}/progress"), "Not started"),
        (format!("/changes/{other}"), "Conflicts"),
        ("/calendar".to_owned(), "CHG-000002"),
        ("/calendar?view=month".to_owned(), "CHG-000001"),
        ("/requests/vm".to_owned(), "Create the request"),
        ("/requests/resize".to_owned(), "db-1"),
        ("/requests/quota".to_owned(), "CPU limit"),
        ("/requests/migrate".to_owned(), "To host"),
        ("/incidents".to_owned(), "db slow"),
        (format!("/incidents/{incident}"), "db-1"),
        ("/fleet".to_owned(), "hv-1"),
        ("/fleet".to_owned(), "lxc-7</a> <span class=\"tag\" title=\"Runs containers"),
        (format!("/fleet/{}", w.vm), "readings"),
        (format!("/fleet/{}", w.host), "readings"),
        ("/admin".to_owned(), "year end"),
    ];
    for (path, text) in &pages {
        let r = admin.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.html);
        r.assert_shows(text);
    }
    // The approver's inbox holds the change with its risk and its explanation.
    let mut petra = Browser::new(&w.app);
    let inbox = petra.sign_in("petra", USER_PASSWORD).await;
    inbox.assert_shows("CHG-000001").assert_shows("Why this risk").assert_shows("Approve CHG-000001");
    // A page that cannot be shown says why, as a page.
    let r = admin.get("/changes/no-such-change").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.assert_shows("not found");
    let r = admin.get("/requests/nonsense").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The VM chart drew a line of the readings written.
    admin.get(&format!("/fleet/{}", w.vm)).await.assert_shows("<polyline points=");
}

#[tokio::test]
async fn a_vm_requested_on_the_dashboard_is_approved_from_the_inbox_of_a_second_user() {
    let w = world().await;
    let approver = w.app.user_with_roles("petra", &["approver"]).await;
    w.app.join_group("change-approvers", &approver).await;
    w.app
        .post(
            "/api/v1/users",
            &w.app.admin_token,
            json!({"username": "alice", "password": USER_PASSWORD,
            "roles": ["requester", "change-manager"]}),
        )
        .await;
    let mut alice = Browser::new(&w.app);
    alice.sign_in("alice", USER_PASSWORD).await;
    let form = alice.get("/requests/vm").await;
    // Bad input comes back on the form, with what was typed and why.
    let r = alice
        .submit(
            &form,
            "/requests/vm",
            &[
                ("name", "web-7"),
                ("image", "tiny.qcow2"),
                ("vcpus", "two"),
                ("memory_gib", "4"),
                ("disk_gib", "20"),
                ("window_start", "2026-11-27T10:00"),
                ("window_end", "2026-11-27T12:00"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_shows("vcpus: must be a whole number").assert_shows("value=\"web-7\"");
    // A container asked of a VM host is refused with the reason, the box still ticked.
    let container_on_vm_host = [
        ("name", "ct-7"),
        ("image", "tiny-root.img"),
        ("vcpus", "1"),
        ("memory_gib", "1"),
        ("disk_gib", "1"),
        ("host_id", w.host.as_str()),
        ("container", "yes"),
        ("kind", "normal"),
        ("window_start", "2026-11-27T10:00"),
        ("window_end", "2026-11-27T12:00"),
    ];
    let r = alice.submit(&form, "/requests/vm", &container_on_vm_host).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.html);
    r.assert_shows("runs virtual machines, not containers").assert_shows("value=\"yes\" checked");
    let start = time::OffsetDateTime::now_utc();
    let f = |t: time::OffsetDateTime| {
        format!("{:04}-{:02}-{:02}T{:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
    };
    let (from, to) = (f(start - time::Duration::minutes(5)), f(start + time::Duration::hours(2)));
    let r = alice
        .submit(
            &form,
            "/requests/vm",
            &[
                ("name", "web-7"),
                ("image", "tiny.qcow2"),
                ("vcpus", "2"),
                ("memory_gib", "4"),
                ("disk_gib", "20"),
                ("host_id", &w.host),
                ("kind", "normal"),
                ("window_start", &from),
                ("window_end", &to),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let path = r.location.unwrap();
    let page = alice.get(&path).await;
    page.assert_shows("draft").assert_shows("Provision VM web-7").assert_shows("Risk");
    // The quota form takes a network limit with the others.
    let quota = alice.get("/requests/quota").await;
    let fields = [("vm_id", w.vm.as_str()), ("cpu_quota_pct", "50"), ("net_mbit", "100")];
    let window = [("kind", "normal"), ("window_start", from.as_str()), ("window_end", to.as_str())];
    let r = alice.submit(&quota, "/requests/quota", &[&fields[..], &window[..]].concat()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    alice.get(&r.location.unwrap()).await.assert_shows("CPU 50%, network 100 Mbit/s");
    for event in ["submit", "assess", "request_approval"] {
        let page = alice.get(&path).await;
        let r = alice.submit(&page, &format!("{path}/events"), &[("event", event)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{event}: {}", r.html);
    }
    alice.get(&path).await.assert_shows("awaiting approval");
    // Alice may not approve her own request: her inbox does not offer it.
    alice.get("/inbox").await.assert_shows("Nothing waits for your vote.");
    let mut petra = Browser::new(&w.app);
    let inbox = petra.sign_in("petra", USER_PASSWORD).await;
    inbox.assert_shows("New VM web-7");
    let change_id = path.trim_start_matches("/changes/");
    let revision = "1";
    let r = petra
        .submit(
            &inbox,
            &format!("/changes/{change_id}/vote"),
            &[("decision", "approve"), ("revision", revision), ("back", "inbox"), ("comment", "")],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/inbox"), "{}", r.html);
    alice.get(&path).await.assert_shows("id=\"change-state\">approved");
}

/// The approve or reject URL in an email file of the outbox (quoted-printable soft breaks undone).
fn link_in(eml: &str, which: &str) -> String {
    let text = eml.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let marker = format!("{which}: ");
    let at = text.find(&marker).unwrap_or_else(|| panic!("no {which} link in the email:\n{eml}"));
    let rest = &text[at + marker.len()..];
    let url = rest.split_whitespace().next().unwrap();
    url[url.find("/email/").unwrap()..].to_owned()
}

/// Gives the user `token` belongs to an email address, keeping them to their one `role`.
async fn give_email(app: &TestApp, token: &str, role: &str, email: &str) {
    let id = app.user_id(token).await;
    let name = email.split('@').next().unwrap();
    let body = json!({"display_name": name, "email": email, "roles": [role], "disabled": false});
    let r = app.put(&format!("/api/v1/users/{id}"), &app.admin_token, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn approval_emails_carry_links_that_work_once_and_never_for_an_edited_change() {
    let w = world().await;
    let petra = w.app.user_with_roles("petra", &["approver"]).await;
    w.app.join_group("change-approvers", &petra).await;
    give_email(&w.app, &petra, "approver", "petra@example.com").await;
    give_email(&w.app, &w.requester, "requester", "rita@example.com").await;
    let outbox = tempfile::tempdir().unwrap();
    let config = tollgate_api::config::EmailConfig { outbox_dir: outbox.path().to_owned(), ..Default::default() };
    let mailer = tollgate_api::mail::Mailer::new(&config, outbox.path()).unwrap().unwrap();
    let mail = || async {
        mailer.round(&w.app.state).await.unwrap();
        let mut found: Vec<String> = std::fs::read_dir(outbox.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|m| m.contains("asks for your approval"))
            .collect();
        found.sort();
        found
    };

    let first = w.request(change("normal", "stop db", crate::changes::stop(&w.vm))).await;
    w.to_approval(&first).await;
    let emails = mail().await;
    assert_eq!(emails.len(), 1, "one approval email, to the one approver with an address");
    let eml = &emails[0];
    assert!(eml.contains("To: petra <petra@example.com>"), "{eml}");
    assert!(eml.contains("multipart/alternative") && eml.contains("text/plain") && eml.contains("text/html"), "{eml}");
    let approve = link_in(eml, "Approve");

    // Whoever is signed in on the browser (here the requester), the link acts for the approver it names.
    let mut browser = Browser::new(&w.app);
    browser.sign_in("rita", USER_PASSWORD).await;
    let confirm = browser.get(&approve).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.html);
    confirm.assert_shows("Approve CHG-000001?").assert_shows("petra");
    assert_eq!(w.state(&first).await, "awaiting_approval", "opening the link decides nothing");
    let token = approve.split("t=").nth(1).unwrap();
    let done = browser.submit(&confirm, "/email/approval", &[("t", token)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    done.assert_shows("You approved CHG-000001");
    assert_eq!(w.state(&first).await, "approved");
    // The requester hears of the decision by email too: the notice template, both parts.
    mail().await;
    let notices: Vec<String> = std::fs::read_dir(outbox.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter(|m| m.contains("To: rita <rita@example.com>"))
        .collect();
    assert!(
        notices.iter().any(|m| m.contains("CHG-000001") && m.contains("text/plain") && m.contains("text/html")),
        "no notice to the requester: {notices:?}"
    );
    // Used once: a second use is refused with a page that says so.
    let again = browser.get(&approve).await;
    assert_eq!(again.status, StatusCode::GONE);
    again.assert_shows("already been used");
    let r = browser.submit(&confirm, "/email/approval", &[("t", token)]).await;
    assert_eq!(r.status, StatusCode::GONE);
    // A tampered link is not a link.
    let r = browser.get(&approve.replace("approve", "reject")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.assert_shows("not valid");

    // A change edited after its email: the link opens a page saying so, and approves nothing.
    let second = w.request(change("normal", "stop db again", crate::changes::stop(&w.vm))).await;
    w.to_approval(&second).await;
    let emails = mail().await;
    let eml = emails.iter().find(|m| m.contains("CHG-000002")).expect("an email about the second change");
    let approve = link_in(eml, "Approve");
    let mut body = change("normal", "stop db, edited", crate::changes::stop(&w.vm));
    body["revision"] = json!(1);
    let r = w.app.put(&format!("/api/v1/changes/{second}"), &w.requester, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = browser.get(&approve).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.assert_shows("edited after the email was sent");
    let page = browser.get("/login").await;
    let token = approve.split("t=").nth(1).unwrap();
    let r = browser.submit(&page, "/email/approval", &[("t", token)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_ne!(w.state(&second).await, "approved");
}

#[tokio::test]
async fn a_delegate_finds_the_delegator_s_approvals_in_the_inbox_and_votes_for_them() {
    let w = world().await;
    let petra = w.app.user_with_roles("petra", &["approver"]).await;
    w.app.join_group("change-approvers", &petra).await;
    let dora = w.app.user_with_roles("dora", &["approver"]).await;
    let dora_id = w.app.user_id(&dora).await;
    let now = time::OffsetDateTime::now_utc();
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let r = w
        .app
        .post(
            "/api/v1/delegations",
            &petra,
            json!({"to_user_id": dora_id, "starts_at": rfc(now - time::Duration::hours(1)),
                   "ends_at": rfc(now + time::Duration::days(1))}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = w.request(change("normal", "stop db", crate::changes::stop(&w.vm))).await;
    w.to_approval(&id).await;

    let mut b = Browser::new(&w.app);
    let inbox = b.sign_in("dora", USER_PASSWORD).await;
    inbox.assert_shows("You also vote for <strong>petra</strong>").assert_shows("Approve CHG-000001");
    let r = b
        .submit(
            &inbox,
            &format!("/changes/{id}/vote"),
            &[("decision", "approve"), ("revision", "1"), ("back", "inbox")],
        )
        .await;
    assert_eq!(r.location.as_deref(), Some("/inbox"), "{}", r.html);
    assert_eq!(w.state(&id).await, "approved");
    b.get(&format!("/changes/{id}")).await.assert_shows("<strong>dora</strong> for petra");
    // Counted once: petra's own inbox no longer offers it.
    let mut p = Browser::new(&w.app);
    p.sign_in("petra", USER_PASSWORD).await.assert_shows("Nothing waits for your vote.");
}
