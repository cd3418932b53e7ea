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
//! full disk refuses the growth before any byte of a record is written.
//!
//! Where the file system allows it, records are written with direct I/O (`O_DIRECT | O_DSYNC`, as
//! PostgreSQL's `wal_sync_method = open_datasync` does): each append writes the 4 KiB blocks it
//! touches straight to the device and returns once they are durable, with no page cache copy and no
//! separate `fdatasync` (on this project's VM, 135 µs a commit against 190). The block a record
//! ends in is written again, whole, by the next append; the bytes of earlier records in it are the
//! same, so a torn write of it cannot change them. Elsewhere (tmpfs, or a device that refuses the
//! alignment) records go through the page cache and `fdatasync`, as before.
//!
//! A record is valid only if its checksum matches and its sequence number follows the one before,
//! so the end of the log is the first record that does not: a record torn by a crash, zeros, or a
//! record of the cycle before the last checkpoint (whose numbers are lower).

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
/// What direct I/O aligns to: offsets, lengths and memory (the largest logical block size in
/// common use, so that it suits 512-byte devices as well).
const BLOCK: usize = 4096;

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
    /// The log opened for direct I/O, where the file system allows it.
    direct: Option<Direct>,
}

/// Appends by direct I/O: the log opened with `O_DIRECT | O_DSYNC`, and the blocks being written.
#[derive(Debug)]
struct Direct {
    file: File,
    /// The blocks from the one the tail is in, from an offset in it that is aligned in memory
    /// (see [`aligned`]). The bytes before the tail in its block, records written
    /// already, are kept here between appends, to be written again with the next record.
    buffer: Vec<u8>,
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
                        direct: Direct::open(path),
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
            direct: Direct::open(path),
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
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&checksum(seq, payload).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(payload);
        let written = self.write_at_tail(&record);
        keep_reusable(&mut record);
        self.record = record;
        if let Err(error) = written {
            // Part of the record, or all of it, may be on disk although it was never
            // acknowledged: its header is zeroed so that it ends the log. If even that fails,
            // the caller must not append after it.
            self.torn = self.write_at_tail(&[0u8; RECORD_HEADER]).is_err();
            return Err(error);
        }
        self.tail = end;
        self.records += 1;
        Ok(())
    }

    /// Writes `bytes` at the tail and makes them durable: by direct I/O where it is taken,
    /// otherwise through the page cache and `fdatasync`.
    fn write_at_tail(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(direct) = &mut self.direct {
            match direct.write(self.tail, bytes) {
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    // Refused before any I/O: this file system or device does not take these
                    // alignments after all.
                    tracing::warn!(%error, log = %self.path.display(), "store: the write-ahead log cannot use direct I/O here; it syncs through the page cache");
                    self.direct = None;
                }
                written => return written,
            }
        }
        self.file
            .write_all_at(bytes, self.tail)
            .and_then(|()| self.file.sync_data())
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
    pub fn resume_after(&mut self, records: &[Record]) -> io::Result<()> {
        self.tail = HEADER
            + records
                .iter()
                .map(|r| (RECORD_HEADER + r.payload.len()) as u64)
                .sum::<u64>();
        self.records = records.len() as u64;
        match &mut self.direct {
            Some(direct) => direct.resume(&self.file, self.tail),
            None => Ok(()),
        }
    }

    /// The log starts over: every record in it is in a durable redb commit.
    pub fn restart(&mut self) {
        self.tail = HEADER;
        self.records = 0;
    }

    /// Whether records are written by direct I/O.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
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

impl Direct {
    /// The log at `path` opened for direct I/O, or `None` where the file system refuses it.
    fn open(path: &Path) -> Option<Direct> {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path);
        match opened {
            Ok(file) => Some(Direct {
                file,
                buffer: Vec::new(),
            }),
            Err(error) => {
                tracing::debug!(%error, log = %path.display(), "store: no direct I/O for the write-ahead log");
                None
            }
        }
    }

    /// Writes `bytes` at `tail`, with the records before it in its block, and zeros after it to
    /// the end of its last block; durable when this returns `Ok`.
    fn write(&mut self, tail: u64, bytes: &[u8]) -> io::Result<()> {
        let within = (tail % BLOCK as u64) as usize;
        let from = tail - within as u64;
        let end = within + bytes.len();
        let len = end.div_ceil(BLOCK) * BLOCK;
        let blocks = aligned(&mut self.buffer, len);
        blocks[within..end].copy_from_slice(bytes);
        blocks[end..].fill(0);
        self.file.write_all_at(blocks, from)?;
        // The block the new tail is in comes first for the next append.
        let last = end / BLOCK * BLOCK;
        if last > 0 {
            blocks.copy_within(last..last + BLOCK.min(len - last), 0);
        }
        Ok(())
    }

    /// The log goes on after `tail`: the records before it in its block are read back.
    fn resume(&mut self, file: &File, tail: u64) -> io::Result<()> {
        let within = (tail % BLOCK as u64) as usize;
        let blocks = aligned(&mut self.buffer, BLOCK);
        file.read_exact_at(&mut blocks[..within], tail - within as u64)
    }
}

/// `len` bytes of `buffer` from an address aligned to [`BLOCK`], growing it if needed (the
/// first block's bytes, kept from the last append, move with it).
fn aligned(buffer: &mut Vec<u8>, len: usize) -> &mut [u8] {
    let start = |buffer: &Vec<u8>| buffer.as_ptr().align_offset(BLOCK);
    if buffer.len() < start(buffer) + len {
        let kept = {
            let at = start(buffer);
            buffer.get(at..at + BLOCK).map(<[u8]>::to_vec)
        };
        *buffer = vec![0u8; (len + BLOCK).next_power_of_two()];
        let at = start(buffer);
        if let Some(kept) = kept {
            buffer[at..at + BLOCK].copy_from_slice(&kept);
        }
    }
    let at = start(buffer);
    &mut buffer[at..at + len]
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

    /// Appends records of many sizes (across block boundaries), reopens the log, goes on after
    /// them, and reads everything back.
    fn records_survive_reopening_and_resuming(direct: bool) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let payload = |seq: u64| -> Vec<u8> {
            let len = [1, 7, 100, 4079, 4080, 4081, 5000, 12_345][seq as usize % 8];
            (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
        };
        let mut wal = log(dir.path());
        if !direct {
            wal.direct = None;
        } else if !wal.is_direct() {
            eprintln!("this file system takes no direct I/O: the page cache path is tested");
        }
        for seq in 1..=20 {
            wal.append(seq, &payload(seq))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        drop(wal);
        let mut wal = log(dir.path());
        if !direct {
            wal.direct = None;
        }
        let read = wal.read().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.len(), 20);
        wal.resume_after(&read).unwrap_or_else(|e| panic!("{e}"));
        for seq in 21..=40 {
            wal.append(seq, &payload(seq))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let read = wal.read().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.len(), 40);
        for record in read {
            assert_eq!(record.payload, payload(record.seq), "record {}", record.seq);
        }
    }

    #[test]
    fn records_written_by_direct_io_read_back_after_reopening() {
        // Where the file system takes direct I/O (not tmpfs), the log uses it.
        records_survive_reopening_and_resuming(true);
    }

    #[test]
    fn records_written_through_the_page_cache_read_back_after_reopening() {
        records_survive_reopening_and_resuming(false);
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
