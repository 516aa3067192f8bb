//! Forwarding: every batch the write API stores is also sent, as written, to InfluxDB 2 or VictoriaMetrics
//! when `[metrics] forward_url` names one.
//!
//! Batches wait in a bounded buffer in memory while the target is unreachable or answers 5xx, and go in
//! order when it is back (retried with a backoff up to 30 s); past the buffer's bytes the oldest are
//! dropped and counted. A batch the target refuses as malformed is dropped and counted. The server's own
//! store stays the record: forwarding never holds up or fails a write.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tollgate_collector::send::{Outcome, Sender};

/// One batch to forward: gzip-compressed line protocol and its timestamps' precision.
struct Batch {
    seq: u64,
    precision: &'static str,
    gzipped: Arc<[u8]>,
}

#[derive(Default)]
struct Buffer {
    batches: VecDeque<Batch>,
    bytes: usize,
    next: u64,
    totals: ForwardTotals,
}

/// What forwarding did since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardTotals {
    pub sent: u64,
    /// Dropped because the buffer was full.
    pub dropped: u64,
    /// Refused by the target as malformed.
    pub refused: u64,
    /// Waiting now.
    pub queued: u64,
}

/// Handle to the forwarding thread; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    shared: Arc<(Mutex<Buffer>, Condvar)>,
    max_bytes: usize,
}

fn lock(m: &Mutex<Buffer>) -> MutexGuard<'_, Buffer> {
    // Every update under this lock is a few field writes: a panic elsewhere cannot leave it half-done.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Forwarder {
    /// Starts forwarding to the write API at `url` (a thread of its own), buffering at most `max_bytes`.
    pub fn start(url: &str, token: &str, max_bytes: usize) -> std::io::Result<Forwarder> {
        let forwarder = Forwarder { shared: Arc::new((Mutex::new(Buffer::default()), Condvar::new())), max_bytes };
        let sender = Sender::to_url(url, token, Duration::from_secs(30));
        let shared = forwarder.shared.clone();
        let target = loggable(url);
        std::thread::Builder::new()
            .name("metric-forwarder".to_owned())
            .spawn(move || run(&shared, &sender, &target))?;
        Ok(forwarder)
    }

    /// Queues a batch, dropping the oldest past the byte limit.
    pub fn push(&self, gzipped: Vec<u8>, precision: &'static str) {
        let (m, ready) = &*self.shared;
        let mut b = lock(m);
        let seq = b.next;
        b.next += 1;
        b.bytes += gzipped.len();
        b.batches.push_back(Batch { seq, precision, gzipped: gzipped.into() });
        while b.bytes > self.max_bytes && b.batches.len() > 1 {
            if let Some(old) = b.batches.pop_front() {
                b.bytes -= old.gzipped.len();
                b.totals.dropped += 1;
            }
        }
        ready.notify_one();
    }

    pub fn totals(&self) -> ForwardTotals {
        let b = lock(&self.shared.0);
        ForwardTotals { queued: b.batches.len() as u64, ..b.totals }
    }
}

/// The URL without its query or any user and password in it, for the log.
fn loggable(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            let host = rest[..host_end].rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{}", &rest[host_end..])
        }
        None => url.to_owned(),
    }
}

fn run(shared: &(Mutex<Buffer>, Condvar), sender: &Sender, target: &str) {
    let (m, ready) = shared;
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let (seq, precision, gzipped) = {
            let mut b = lock(m);
            while b.batches.is_empty() {
                b = ready.wait(b).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            let front = &b.batches[0];
            (front.seq, front.precision, front.gzipped.clone())
        };
        let outcome = sender.send(&gzipped, precision);
        let mut b = lock(m);
        // The batch may have been dropped for room while it was being sent.
        let still_front = b.batches.front().is_some_and(|f| f.seq == seq);
        match outcome {
            Outcome::Accepted | Outcome::Refused(_) => {
                if still_front {
                    if let Some(done) = b.batches.pop_front() {
                        b.bytes -= done.gzipped.len();
                    }
                }
                if let Outcome::Refused(why) = outcome {
                    b.totals.refused += 1;
                    tracing::warn!(target_url = target, reason = %why, "the forwarding target refused a batch; it is dropped");
                } else {
                    b.totals.sent += 1;
                }
                if failing {
                    tracing::info!(target_url = target, "forwarding works again");
                    failing = false;
                }
                backoff = Duration::from_secs(1);
            }
            Outcome::Retry(why) => {
                if !failing {
                    tracing::warn!(target_url = target, reason = %why, "forwarding paused; batches wait in memory");
                    failing = true;
                }
                drop(b);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forwarder whose thread is not running, to look at the buffer alone.
    fn idle(max_bytes: usize) -> Forwarder {
        Forwarder { shared: Arc::new((Mutex::new(Buffer::default()), Condvar::new())), max_bytes }
    }

    #[test]
    fn the_log_names_the_target_without_credentials_or_query() {
        assert_eq!(
            loggable("https://u:secret@vm.example:8428/api/v2/write?db=x"),
            "https://vm.example:8428/api/v2/write"
        );
        assert_eq!(loggable("http://influx:8086/api/v2/write?org=o&bucket=b"), "http://influx:8086/api/v2/write");
    }

    #[test]
    fn past_its_bytes_the_buffer_drops_the_oldest_batches_and_counts_them() {
        let f = idle(25);
        for n in 0..5_u8 {
            f.push(vec![n; 10], "ns");
        }
        assert_eq!(f.totals(), ForwardTotals { sent: 0, dropped: 3, refused: 0, queued: 2 });
        let b = lock(&f.shared.0);
        assert_eq!(b.batches.iter().map(|x| x.gzipped[0]).collect::<Vec<_>>(), [3, 4], "the newest are kept");
        assert_eq!(b.bytes, 20);
    }
}
