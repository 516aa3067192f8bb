//! Benchmark: points per second accepted by an InfluxDB-v2-style write API, from one load generator.
//!
//! Hosts (default 1,000) each report a set of single-field series (default 50); batches of 5,000 lines, every
//! line one point, go over `--connections` keep-alive HTTP/1.1 connections (default 4) for `--seconds`. The
//! batches are built once; only their timestamps (fixed width) are rewritten as time moves on, so the
//! generator costs little next to the target. Run it against the Tollgate server and against
//! VictoriaMetrics in turn (`scripts/bench` does) and compare.
//!
//!   cargo bench -p tollgate-api --bench ingest -- --url http://127.0.0.1:8080/api/v2/write [--token T]
//!       [--hosts 1000] [--series 50] [--lines 5000] [--connections 4] [--seconds 20]

mod common;

use anyhow::{bail, Context};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    url: String,
    token: Option<String>,
    hosts: usize,
    series: usize,
    lines: usize,
    connections: usize,
    seconds: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a =
        Args { url: String::new(), token: None, hosts: 1000, series: 50, lines: 5000, connections: 4, seconds: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("a flag needs a value");
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--token" => a.token = Some(value()?),
            "--hosts" => a.hosts = value()?.parse()?,
            "--series" => a.series = value()?.parse()?,
            "--lines" => a.lines = value()?.parse()?,
            "--connections" => a.connections = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    if a.url.is_empty() {
        bail!("--url is required: the write API, e.g. http://127.0.0.1:8080/api/v2/write");
    }
    if a.hosts == 0 || a.series == 0 || a.lines == 0 || a.connections == 0 || a.seconds == 0 || a.seconds > 600 {
        bail!("counts must be positive and --seconds at most 600");
    }
    Ok(a)
}

/// Width of a nanosecond timestamp in this century.
const TS_WIDTH: usize = 19;

/// One batch: its text, and where each line's timestamp starts.
struct Batch {
    text: Vec<u8>,
    stamps: Vec<usize>,
}

/// The lines of every (host, series), cut into batches of `lines`.
fn batches(a: &Args) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut current = Batch { text: Vec::new(), stamps: Vec::new() };
    for h in 0..a.hosts {
        for s in 0..a.series {
            let line = format!(
                "node_{s},host=hv-{h:04},cluster=c{:02},region=r{} value={}.5 ",
                h % 14,
                h % 4,
                (h * 31 + s * 7) % 1000
            );
            current.text.extend_from_slice(line.as_bytes());
            current.stamps.push(current.text.len());
            current.text.extend_from_slice(&[b'0'; TS_WIDTH]);
            current.text.push(b'\n');
            if current.stamps.len() == a.lines {
                out.push(std::mem::replace(&mut current, Batch { text: Vec::new(), stamps: Vec::new() }));
            }
        }
    }
    if !current.stamps.is_empty() {
        out.push(current);
    }
    out
}

fn stamp(batch: &mut Batch, ns: i64) {
    let digits = format!("{ns:0TS_WIDTH$}");
    for &at in &batch.stamps {
        batch.text[at..at + TS_WIDTH].copy_from_slice(digits.as_bytes());
    }
}

/// One keep-alive HTTP/1.1 connection posting batches.
struct Conn {
    stream: BufReader<TcpStream>,
    head: String,
}

impl Conn {
    async fn open(host: &str, path: &str, token: Option<&str>) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(host).await.with_context(|| format!("cannot connect to {host}"))?;
        stream.set_nodelay(true)?;
        let auth = token.map(|t| format!("Authorization: Token {t}\r\n")).unwrap_or_default();
        let head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: text/plain\r\n");
        Ok(Conn { stream: BufReader::new(stream), head })
    }

    async fn post(&mut self, body: &[u8]) -> anyhow::Result<u16> {
        let head = format!("{}Content-Length: {}\r\n\r\n", self.head, body.len());
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let (status, rest) = common::read_response(&mut self.stream).await?;
        if !(200..300).contains(&status) {
            bail!("the target answered {status}: {}", String::from_utf8_lossy(&rest));
        }
        Ok(status)
    }
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    let rest = a.url.strip_prefix("http://").context("--url must be http://host:port/path")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let path = format!("/{}{}precision=ns", path.trim_start_matches('/'), if path.contains('?') { "&" } else { "?" });
    // The batches, dealt out to the connections before the clock starts.
    let all = batches(&a);
    let per_round = all.len();
    let mut shares: Vec<Vec<Batch>> = (0..a.connections).map(|_| Vec::new()).collect();
    for (i, b) in all.into_iter().enumerate() {
        shares[i % a.connections].push(b);
    }
    let mut conns = Vec::new();
    for _ in 0..a.connections {
        conns.push(Conn::open(host, &path, a.token.as_deref()).await?);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    // Each round stamps every batch 10 s after the round before: every point is a new one.
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 - 86_400_000_000_000;
    let mut tasks = Vec::new();
    for (mut mine, mut conn) in shares.into_iter().zip(conns) {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut round = 0_i64;
            'outer: loop {
                for b in &mut mine {
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                    stamp(b, t0 + round * 10_000_000_000);
                    conn.post(&b.text).await?;
                    sent.fetch_add(b.stamps.len() as u64, Ordering::Relaxed);
                }
                round += 1;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let points = sent.load(Ordering::Relaxed);
    println!(
        "ingest benchmark against {}: {points} points in {elapsed:.1} s by {} connections \
         ({} hosts × {} series, {}-line batches, {per_round} batches a round)",
        a.url, a.connections, a.hosts, a.series, a.lines
    );
    println!("  {:.0} points/s", points as f64 / elapsed);
    Ok(())
}
