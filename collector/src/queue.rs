//! The bounded disk-backed queue of batches not yet accepted by the server.
//!
//! Each batch is one file, `<sequence>-<points>.lp.gz` (gzip-compressed line protocol), written to a
//! temporary name and renamed, so a crash leaves whole batches or none. Batches go out oldest first. When
//! the files pass the byte limit the oldest are dropped, and counted, so that a long outage costs the
//! oldest data, never the newest and never the disk.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One queued batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub points: u64,
    pub bytes: u64,
    path: PathBuf,
}

impl Queued {
    /// The batch's gzip-compressed line protocol.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        fs::read(&self.path)
    }
}

/// What the queue dropped to stay under its limit, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub batches: u64,
    pub points: u64,
}

pub struct Queue {
    dir: PathBuf,
    max_bytes: u64,
    /// Oldest first.
    batches: Vec<Queued>,
    next: u64,
    dropped: Dropped,
}

const SUFFIX: &str = ".lp.gz";

impl Queue {
    /// Opens (creating) the queue in `dir`, keeping at most `max_bytes` of batches; finds what an earlier
    /// run left there.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> io::Result<Queue> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut batches = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A batch a crash cut off while it was written: it was never queued.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some((seq, points)) = parse_name(&name) {
                batches.push(Queued { seq, points, bytes: entry.metadata()?.len(), path: entry.path() });
            }
        }
        batches.sort_by_key(|b| b.seq);
        let next = batches.last().map_or(1, |b| b.seq + 1);
        let mut queue = Queue { dir, max_bytes, batches, next, dropped: Dropped::default() };
        queue.trim()?;
        Ok(queue)
    }

    /// Queues a batch of `points` points; returns its sequence number.
    pub fn push(&mut self, gzipped: &[u8], points: u64) -> io::Result<u64> {
        let seq = self.next;
        self.next += 1;
        let name = format!("{seq:020}-{points}{SUFFIX}");
        let tmp = self.dir.join(format!("{name}.tmp"));
        fs::write(&tmp, gzipped)?;
        let path = self.dir.join(&name);
        fs::rename(&tmp, &path)?;
        self.batches.push(Queued { seq, points, bytes: gzipped.len() as u64, path });
        self.trim()?;
        Ok(seq)
    }

    /// The oldest batch, if any.
    pub fn oldest(&self) -> Option<&Queued> {
        self.batches.first()
    }

    /// Removes a batch the server accepted (or refused for good).
    pub fn remove(&mut self, seq: u64) -> io::Result<()> {
        if let Some(i) = self.batches.iter().position(|b| b.seq == seq) {
            let b = self.batches.remove(i);
            match fs::remove_file(&b.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes).sum()
    }

    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn trim(&mut self) -> io::Result<()> {
        while self.bytes() > self.max_bytes && self.batches.len() > 1 {
            let oldest = self.batches[0].seq;
            let points = self.batches[0].points;
            self.remove(oldest)?;
            self.dropped.batches += 1;
            self.dropped.points += points;
        }
        Ok(())
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (seq, points) = stem.split_once('-')?;
    Some((seq.parse().ok()?, points.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary folder")
    }

    #[test]
    fn batches_come_out_oldest_first_and_survive_a_restart() {
        let d = dir();
        let mut q = Queue::open(d.path(), 1 << 20).expect("opens");
        let a = q.push(b"first", 1).expect("queued");
        let b = q.push(b"second", 2).expect("queued");
        drop(q);
        let mut q = Queue::open(d.path(), 1 << 20).expect("reopens");
        assert_eq!(q.len(), 2);
        let oldest = q.oldest().expect("a batch").clone();
        assert_eq!((oldest.seq, oldest.read().expect("reads")), (a, b"first".to_vec()));
        q.remove(a).expect("removed");
        assert_eq!(q.oldest().map(|o| o.seq), Some(b));
        assert!(q.push(b"third", 3).expect("queued") > b, "numbers keep rising after a restart");
    }

    #[test]
    fn past_the_byte_limit_the_oldest_batches_are_dropped_and_counted() {
        let d = dir();
        let mut q = Queue::open(d.path(), 25).expect("opens");
        for n in 0..5 {
            q.push(&[n; 10], 7).expect("queued");
        }
        assert_eq!(q.len(), 2, "25 bytes hold two batches of 10");
        assert_eq!(q.dropped(), Dropped { batches: 3, points: 21 });
        assert_eq!(q.oldest().map(|o| o.read().expect("reads")), Some(vec![3; 10]), "the newest are kept");
        assert_eq!(fs::read_dir(d.path()).expect("lists").count(), 2, "dropped batches leave no files");
    }

    #[test]
    fn a_batch_cut_off_by_a_crash_is_discarded() {
        let d = dir();
        fs::write(d.path().join("00000000000000000007-3.lp.gz.tmp"), b"half").expect("written");
        fs::write(d.path().join("unrelated.txt"), b"x").expect("written");
        let q = Queue::open(d.path(), 1 << 20).expect("opens");
        assert!(q.is_empty());
        assert!(!d.path().join("00000000000000000007-3.lp.gz.tmp").exists());
    }
}
