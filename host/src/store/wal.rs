//! The redb store's write-ahead log: what makes a commit durable with one small write and one
//! `fdatasync`, rather than redb's durable commit of every dirty page.
//!
//! A commit appends its changes here as one record and syncs the file, and is acknowledged; redb
//! applies them afterwards, behind the writer and without a sync of its own (`Durability::None`;
//! see `redb::behind`). Every 8,192 commits (or 8 MiB of records) the store makes one durable
//! redb commit (a checkpoint) and the log starts over at its beginning.
//! After a crash, redb opens at its last checkpoint and the records after it are applied again,
//! in order.
//!
//! ```text
//! header (4 KiB)  magic "FGWAL001", the store's id (u64, little-endian)
//! records         [length u32][crc32 u32][seq u64][payload: the commit's changes as JSON]
//! ```
//!
//! The file is filled with zeros ahead of the records, a mebibyte at a time, so a record is
//! written over space the file already has: its sync flushes data, not the file's size, and a
//! full disk refuses the growth before any byte of a record is written. A record is valid only
//! if its checksum matches and its sequence number follows the one before, so the end of the
//! log is the first record that does not: a record torn by a crash, zeros, or a record of the
//! cycle before the last checkpoint (whose numbers are lower).

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FGWAL001";
/// Where the first record starts.
const HEADER: u64 = 4096;
/// Length, checksum and sequence number.
const RECORD_HEADER: usize = 16;
/// How much the file grows by when a record does not fit.
const GROW: u64 = 1 << 20;
/// A record longer than this is not one (a length read from garbage).
const MAX_RECORD: u32 = 1 << 30;

/// The log file, and where the next record goes.
#[derive(Debug)]
pub(super) struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next record is written.
    tail: u64,
    /// How far the file is filled (with zeros, or records).
    filled: u64,
    /// The records written since the log started over.
    records: u64,
    /// See [`Wal::torn`].
    torn: bool,
    /// The record being written, kept between appends: a fresh buffer for every commit cost
    /// the kernel's zeroing of new pages (a quarter of the writer's time at 64 clients).
    record: Vec<u8>,
}

/// A record read back.
#[derive(Debug)]
pub(super) struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// The log's path for the store at `store`: beside it, `<store>-wal`.
pub(crate) fn path_for(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    store.with_file_name(name)
}

impl Wal {
    /// Opens the log of the store whose id is `store_id`, creating it if there is none. A log
    /// that belongs to another store (a store file replaced by hand, beside the old log) is set
    /// aside as `<log>.orphaned-<id>` rather than applied to a store it was not written for.
    pub fn open(path: &Path, store_id: u64) -> io::Result<Wal> {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => {
                let mut header = [0u8; 16];
                let whole = file.read_exact_at(&mut header, 0).is_ok();
                if whole && &header[..8] == MAGIC && header[8..16] == store_id.to_le_bytes() {
                    let filled = file.metadata()?.len();
                    return Ok(Wal {
                        file,
                        path: path.to_path_buf(),
                        tail: HEADER,
                        filled,
                        records: 0,
                        torn: false,
                        record: Vec::new(),
                    });
                }
                let found = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
                let aside = {
                    let mut name = path.file_name().unwrap_or_default().to_os_string();
                    name.push(format!(".orphaned-{found:016x}"));
                    path.with_file_name(name)
                };
                tracing::warn!(
                    log = %path.display(),
                    aside = %aside.display(),
                    "store: the write-ahead log belongs to another store file; set aside, not applied"
                );
                std::fs::rename(path, &aside)?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Wal::create(path, store_id)
    }

    fn create(path: &Path, store_id: u64) -> io::Result<Wal> {
        let partial = {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".partial");
            path.with_file_name(name)
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)?;
        let mut header = vec![0u8; HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&store_id.to_le_bytes());
        file.write_all_at(&header, 0)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(Wal {
            file,
            path: path.to_path_buf(),
            tail: HEADER,
            filled: HEADER,
            records: 0,
            torn: false,
            record: Vec::new(),
        })
    }

    /// The valid records from the start of the log, in order: each follows the one before by
    /// sequence number, and the first one that does not (or does not check) ends the log.
    pub fn read(&self) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        let mut at = HEADER;
        let mut head = [0u8; RECORD_HEADER];
        while at + RECORD_HEADER as u64 <= self.filled {
            self.file.read_exact_at(&mut head, at)?;
            let len = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default());
            let crc = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
            let seq = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
            let end = at + RECORD_HEADER as u64 + u64::from(len);
            if len == 0 || len > MAX_RECORD || end > self.filled {
                break;
            }
            if records.last().is_some_and(|r: &Record| r.seq + 1 != seq) {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            self.file
                .read_exact_at(&mut payload, at + RECORD_HEADER as u64)?;
            if checksum(seq, &payload) != crc {
                break;
            }
            records.push(Record { seq, payload });
            at = end;
        }
        Ok(records)
    }

    /// Appends a record and syncs it: when this returns `Ok`, the record survives a crash.
    /// A failure to grow the file (a full disk) comes before any byte of the record is written.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "commit too large"))?;
        let end = self.tail + (RECORD_HEADER + payload.len()) as u64;
        if end > self.filled {
            self.grow(end)?;
        }
        let record = &mut self.record;
        record.clear();
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&checksum(seq, payload).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(payload);
        let written = self
            .file
            .write_all_at(record, self.tail)
            .and_then(|()| self.file.sync_data());
        keep_reusable(record);
        if let Err(error) = written {
            // Part of the record, or all of it, may be on disk although it was never
            // acknowledged: its header is zeroed so that it ends the log. If even that fails,
            // the caller must not append after it.
            self.torn = self
                .file
                .write_all_at(&[0u8; RECORD_HEADER], self.tail)
                .and_then(|()| self.file.sync_data())
                .is_err();
            return Err(error);
        }
        self.tail = end;
        self.records += 1;
        Ok(())
    }

    /// Whether a failed append may have left a record at the end that was never acknowledged
    /// and could not be taken back.
    pub fn torn(&self) -> bool {
        self.torn
    }

    /// Fills the file with zeros past `end`, and syncs it (its size changed).
    fn grow(&mut self, end: u64) -> io::Result<()> {
        let to = end.div_ceil(GROW) * GROW;
        let zeros = vec![0u8; (to - self.filled) as usize];
        if let Err(e) = self
            .file
            .write_all_at(&zeros, self.filled)
            .and_then(|()| self.file.sync_all())
        {
            // Give back what was taken; the log ends where it did.
            let _ = self.file.set_len(self.filled);
            return Err(e);
        }
        self.filled = to;
        Ok(())
    }

    /// The next record goes after `records` (read back, and not yet in a durable redb commit).
    pub fn resume_after(&mut self, records: &[Record]) {
        self.tail = HEADER
            + records
                .iter()
                .map(|r| (RECORD_HEADER + r.payload.len()) as u64)
                .sum::<u64>();
        self.records = records.len() as u64;
    }

    /// The log starts over: every record in it is in a durable redb commit.
    pub fn restart(&mut self) {
        self.tail = HEADER;
        self.records = 0;
    }

    /// Bytes of records since the log started over.
    pub fn bytes(&self) -> u64 {
        self.tail - HEADER
    }

    /// Records since the log started over.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Buffers reused from one record to the next are kept up to this size; a larger one (a rare,
/// very large commit) is given back rather than held for the life of the process.
const KEEP_BUFFER: usize = 4 << 20;

/// Empties `buffer` for reuse, giving its memory back if a rare large record grew it.
pub(super) fn keep_reusable(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEEP_BUFFER {
        *buffer = Vec::new();
    } else {
        buffer.clear();
    }
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path) -> Wal {
        Wal::open(&dir.join("s.redb-wal"), 7).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn records_read_back_in_order_until_the_first_that_does_not_follow() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut wal = log(dir.path());
        for seq in 10..13 {
            wal.append(seq, format!("commit {seq}").as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        drop(wal);
        let wal = log(dir.path());
        let seqs: Vec<u64> = wal
            .read()
            .unwrap_or_default()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [10, 11, 12]);
        // After a restart, new records overwrite the old from the start; the old ones past
        // them have lower numbers and end the log.
        let mut wal = wal;
        wal.restart();
        wal.append(13, b"a much longer thirteenth commit")
            .unwrap_or_else(|e| panic!("{e}"));
        let read = wal.read().unwrap_or_default();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].payload, b"a much longer thirteenth commit");
    }

    #[test]
    fn a_torn_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut wal = log(dir.path());
        wal.append(1, b"first").unwrap_or_else(|e| panic!("{e}"));
        wal.append(2, b"second").unwrap_or_else(|e| panic!("{e}"));
        // A crash in the middle of the second record's write: one byte of it differs.
        wal.file
            .write_all_at(b"X", HEADER + (RECORD_HEADER + 5 + RECORD_HEADER) as u64)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wal.read().unwrap_or_default().len(), 1);
    }

    #[test]
    fn a_log_of_another_store_is_set_aside_not_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut wal = log(dir.path());
        wal.append(1, b"first").unwrap_or_else(|e| panic!("{e}"));
        drop(wal);
        let other = Wal::open(&dir.path().join("s.redb-wal"), 8).unwrap_or_else(|e| panic!("{e}"));
        assert!(other.read().unwrap_or_default().is_empty());
        assert!(
            dir.path()
                .join("s.redb-wal.orphaned-0000000000000007")
                .exists()
        );
    }
}
