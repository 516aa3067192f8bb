//! `tollgate`: the server and its administrative commands.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tollgate_api::config::{Config, Overrides, EXAMPLE};
use tollgate_workflows::accounts::{bootstrap_admin, Password};
use tollgate_workflows::{audit, Clock};

/// mimalloc: a request allocates and frees many small buffers across threads; with glibc's allocator that
/// was about a sixth of the server's CPU time in the lifecycle benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "ITIL-governed operations for private clouds")]
struct Cli {
    /// TOML configuration file (see `tollgate print-config`).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print the documented example configuration, or with --effective the configuration in force.
    PrintConfig {
        #[arg(long)]
        effective: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Audit-log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and report the first tampered record.
    Verify(StoreArgs),
}

#[derive(clap::Args, Default)]
struct StoreArgs {
    /// Folder for the embedded database [default: ./tollgate-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite:… or postgres://…) instead of the embedded file.
    #[arg(long, value_name = "URL", env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    store: StoreArgs,
}

fn overrides(listen: Option<SocketAddr>, store: StoreArgs) -> Overrides {
    Overrides { listen, data_dir: store.data_dir, database_url: store.database_url }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_file = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let config = Config::load(config_file, &overrides(args.listen, args.store))?;
            serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PrintConfig { effective, store } => {
            if effective {
                print!("{}", Config::load(config_file, &overrides(None, store))?.to_toml());
            } else {
                print!("{EXAMPLE}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify(store) } => {
            let config = Config::load(config_file, &overrides(None, store))?;
            let db = tollgate_api::open_store(&config, Clock::system()).await?;
            let report = audit::verify(&db).await.context("cannot read the audit log")?;
            match report.first_problem {
                None => {
                    println!("audit log intact: {} records verified", report.records_checked);
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    println!("{problem}");
                    println!("({} records before it verified)", report.records_checked);
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Openapi => {
            println!("{}", tollgate_api::api_doc().to_pretty_json()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    tollgate_api::telemetry::init(&config.log.filter);
    let db = tollgate_api::open_store(&config, Clock::system()).await?;
    let bootstrap = config
        .bootstrap
        .admin_password
        .as_ref()
        .map(|p| Password::parse("bootstrap.admin_password", p.expose()))
        .transpose()?;
    let password_set_by_config = bootstrap.is_some();
    let created = bootstrap_admin(&db, bootstrap).await.context("cannot create the first administrator")?;
    let seeded = tollgate_workflows::process::seed_defaults(&db).await.context("cannot store the default processes")?;
    if seeded > 0 {
        tracing::info!(seeded, "stored the default process definitions");
    }
    let (groups, policies) =
        tollgate_workflows::approval::seed_defaults(&db).await.context("cannot store the default approval policies")?;
    if groups + policies > 0 {
        tracing::info!(groups, policies, "stored the default approval groups and policies");
    }
    let demo_hosts = if config.control.demo_fleet {
        tollgate_control::simulated::seed_demo_fleet(&db).await.context("cannot seed the simulated demo fleet")?
    } else {
        0
    };
    if demo_hosts > 0 {
        tracing::info!(hosts = demo_hosts, "seeded the simulated demo fleet");
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if config.web.public_url.is_empty() {
        // Links in emails name the address actually bound (a configured port 0 is a real port by now).
        config.web.public_url = format!("http://{addr}");
    }
    tollgate_api::web::render::global().check().map_err(|e| anyhow::anyhow!("the web templates are broken: {e}"))?;
    let mailer =
        tollgate_api::mail::Mailer::new(&config.email, &config.server.data_dir).context("cannot set up email")?;
    let state = tollgate_api::state(&config, db.clone());
    let mail_state = state.clone();
    let points = state.points.clone();
    let (policy, alert_totals) = (state.incidents.clone(), state.alerts.clone());
    let (executor_policy, sim_fleet) = (state.incidents.clone(), state.sim_fleet.clone());
    let reconcile_policy = state.incidents.clone();
    let sim_metrics = (config.metrics.self_interval_secs > 0).then(|| {
        tollgate_api::background::spawn_sim_metrics(
            state.points.clone(),
            db.clone(),
            state.sim_fleet.clone(),
            Duration::from_secs(config.metrics.self_interval_secs),
            stop_rx.clone(),
        )
    });
    let (router, _) = tollgate_api::app(state, config.server.max_body_bytes);
    print_banner(&config, addr, db.engine(), created.as_ref(), password_set_by_config);
    if demo_hosts > 0 {
        println!(
            "  Fleet:     a SIMULATED demo fleet of {demo_hosts} hosts (sim-a-01 …, hypervisor \"simulated\"): its VMs"
        );
        println!("             exist only inside this server. Real hosts join by running tollgate-agent on them.");
        println!();
    }
    tracing::info!(%addr, engine = db.engine().name(), "serving");
    let timers = tollgate_api::background::spawn_timers(
        db.clone(),
        Duration::from_secs(config.incident.sla_check_interval_secs),
        stop_rx,
    );
    let self_metrics = (config.metrics.self_interval_secs > 0).then(|| {
        tollgate_api::background::spawn_self_metrics(
            points,
            db.clock().clone(),
            Duration::from_secs(config.metrics.self_interval_secs),
            stop_tx.subscribe(),
        )
    });
    let upkeep = tollgate_api::background::spawn_metric_upkeep(
        db.clone(),
        config.metrics.retention(),
        Duration::from_secs(config.metrics.rollup_interval_secs),
        stop_tx.subscribe(),
    );
    let alerts = tollgate_api::background::spawn_alert_evaluator(
        db.clone(),
        policy,
        alert_totals,
        Duration::from_secs(config.metrics.alert_interval_secs),
        stop_tx.subscribe(),
    );
    let executor = tollgate_api::background::spawn_executor(
        tollgate_control::jobs::Executor::new(db.clone(), executor_policy),
        Arc::new(tollgate_control::simulated::SimAgents::new(db.clone(), sim_fleet)),
        reconcile_policy,
        (Duration::from_millis(config.control.tick_millis), Duration::from_secs(config.control.reconcile_secs)),
        stop_tx.subscribe(),
    );
    let mail = mailer.map(|m| {
        tollgate_api::mail::spawn_mailer(
            m,
            mail_state,
            Duration::from_secs(config.email.interval_secs),
            stop_tx.subscribe(),
        )
    });
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    tollgate_api::serve(listener, router, shutdown, Duration::from_secs(config.server.shutdown_grace_secs)).await?;
    let _ = timers.await;
    let _ = upkeep.await;
    let _ = alerts.await;
    let _ = executor.await;
    for task in [self_metrics, sim_metrics, mail].into_iter().flatten() {
        let _ = task.await;
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(
    config: &Config,
    addr: SocketAddr,
    engine: tollgate_workflows::Engine,
    created: Option<&Password>,
    password_set_by_config: bool,
) {
    let base = format!("http://{addr}");
    let database = match engine {
        tollgate_workflows::Engine::Sqlite if config.database.url.is_empty() => {
            format!("SQLite file {}", config.server.data_dir.join("tollgate.db").display())
        }
        other => other.name().to_owned(),
    };
    println!();
    println!("Tollgate {} is running.", env!("CARGO_PKG_VERSION"));
    println!("  API:       {base}/api/v1   (OpenAPI document: {base}/api/v1/openapi.json)");
    println!("  Health:    {base}/healthz  {base}/readyz   Metrics: {base}/metrics");
    println!("  Dashboard: {}/   (sign in in the browser with the account below)", config.web.base_url(addr));
    println!("  Database:  {database}");
    println!("  Email:     {}", tollgate_api::mail::Mailer::describe(&config.email, &config.server.data_dir));
    match created {
        Some(_) if password_set_by_config => {
            println!("  Sign in:   user \"admin\" with the password from bootstrap.admin_password")
        }
        Some(password) => {
            println!("  Sign in:   user \"admin\", password \"{}\"", password.expose());
            println!("             (shown only now; change it with PUT /api/v1/users/me/password)");
        }
        None => println!("  Sign in:   with your account (the first start printed the admin password)"),
    }
    println!("  Token:     curl -s -X POST {base}/api/v1/auth/tokens -H 'content-type: application/json' \\");
    println!("               -d '{{\"username\":\"admin\",\"password\":\"…\"}}'");
    println!("  Stop with Ctrl-C.");
    println!();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
