//! The store under an operator's troubles: a disk that fills up (a small tmpfs), and a backup
//! taken while the daemon serves and restored with it stopped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::harness::*;

/// A tmpfs of `size_mb` mounted on a folder, unmounted when dropped. Mounting needs root (CI
/// runs as root), or a user and mount namespace of its own: `unshare -rm cargo test ...`.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_mb: u32) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("mount: {e}"));
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} ({}): this test needs root, or run it under `unshare -rm`",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Fills the file system up with `filler`: every later write that needs room fails.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap_or_else(|e| panic!("{e}"));
        let chunk = vec![0xA5u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // The last partial chunk, byte by byte to the end.
        while let Ok(1) = file.write(&chunk[..1]) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a file the killed daemon held may still be closing.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn purchase(cents: i64) -> Value {
    json!({"workflow": "purchase-request", "data": {"amount_cents": cents, "currency": "USD", "category": "office", "requester": "alice"}})
}

/// Starts purchase requests until one is refused, keeping the ids of those acknowledged; the
/// refusal.
fn start_until_refused(d: &Daemon, acknowledged: &mut Vec<String>) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "{} starts were acknowledged on a full disk and none refused",
            acknowledged.len()
        );
        let (status, body) = d.call(
            "POST",
            "/api/v1/instances",
            Some(ACME_ADMIN),
            Some(purchase(70_000)),
        );
        match status {
            201 => acknowledged.push(body["id"].as_str().unwrap_or_default().to_string()),
            _ => return (status, body),
        }
    }
}

#[test]
fn a_full_disk_is_named_readiness_fails_until_there_is_room_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tmpfs = Tmpfs::mount(&dir.path().join("data"), 48);
    let mut d = start_with(dir, &example_tenants(), "");
    assert_eq!(d.call("GET", "/readyz", None, None).0, 200);

    let filler = tmpfs.fill();
    let mut acknowledged = Vec::new();
    let refused = start_until_refused(&d, &mut acknowledged);
    // The client is told the cause, in the error shape, and when to try again.
    let (status, body) = refused;
    assert_eq!(status, 503, "{body}");
    assert_eq!(code(&body), "storage_full", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the disk is full"), "{message}");

    // Readiness says so while commits fail, to anyone (a load balancer has no token).
    let (status, ready) = d.call("GET", "/readyz", None, None);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(code(&ready), "storage_full", "{ready}");
    let metrics = d
        .agent
        .get(&format!("{}/metrics", d.base))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    assert!(
        metrics.contains("flowgate_store_failing 1"),
        "the metrics say the store is failing"
    );
    // Past the writer's retry interval the store is reopened; while the disk stays full, a
    // commit that needs room fails again, with the same cause, and readiness says so again.
    std::thread::sleep(Duration::from_millis(1_200));
    let (status, body) = start_until_refused(&d, &mut acknowledged);
    assert_eq!((status, code(&body)), (503, "storage_full"), "{body}");
    let (status, ready) = d.call("GET", "/readyz", None, None);
    assert_eq!(status, 503, "{ready}");

    // Room again: the store is reopened, readiness comes back without any command, and
    // commands are taken.
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{e}"));
    eventually("readiness after the disk has room", || {
        (d.call("GET", "/readyz", None, None).0 == 200).then_some(())
    });
    let (status, body) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(purchase(70_000)),
    );
    assert_eq!(status, 201, "{body}");
    acknowledged.push(body["id"].as_str().unwrap_or_default().to_string());

    // Everything acknowledged, before and after the failure, survives a kill -9.
    crash(&mut d);
    let d = start_in(folder_of(d), 1 << 20);
    for id in &acknowledged {
        let (status, body) = d.call(
            "GET",
            &format!("/api/v1/instances/{id}"),
            Some(ACME_ADMIN),
            None,
        );
        assert_eq!(status, 200, "acknowledged {id} lost: {body}");
    }
    drop(d);
    drop(tmpfs);
}

#[test]
fn an_online_backup_restores_the_data_as_it_was_when_taken() {
    const OPERATOR: &str = "the-operators-token";
    let hash = hex::encode(Sha256::digest(OPERATOR.as_bytes()));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let extra = format!("operator_token_sha256 = \"{hash}\"\nbackup_dir = {backups:?}\n");
    let mut d = start_with(dir, &example_tenants(), &extra);

    // A request that was decided, and one whose task a person completed.
    let (status, auto) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(purchase(5_000)),
    );
    assert_eq!(status, 201, "{auto}");
    let approved = start_purchase(&d, 70_000, "office");
    let task = d.task_for(&approved, "manager");
    let by = json!({"id": "mia", "roles": ["manager"]});
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        Some(ACME_ADMIN),
        Some(json!({"outcome": "approve", "by": by})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, before) = d.call(
        "GET",
        &format!("/api/v1/instances/{approved}"),
        Some(ACME_ADMIN),
        None,
    );

    // Only the operator takes backups.
    let url = "/api/v1/operator/backups";
    assert_eq!(d.call("POST", url, None, None).0, 401);
    let (status, body) = d.call("POST", url, Some(ACME_ADMIN), None);
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    let base = d.base.clone();
    let (ok, backup, err) = run_cli(&["--url", &base, "--token", OPERATOR, "backup"]);
    assert!(ok, "{err}");
    let folder = backup["path"].as_str().unwrap_or_default().to_string();
    assert!(
        Path::new(&folder).starts_with(&backups),
        "{backup} is under the configured backup_dir"
    );
    assert!(backup["instances"].as_u64() >= Some(2), "{backup}");
    assert!(Path::new(&folder).join("backup.json").exists());

    // Work after the backup is not in it.
    let later = start_purchase(&d, 70_000, "office");

    // A restore refuses a store the running daemon holds.
    let data_arg = data.display().to_string();
    let (ok, _, err) = run_cli(&["--data-dir", &data_arg, "restore", &folder]);
    assert!(!ok, "a restore under a running daemon succeeded");
    assert!(err.contains("stop it before restoring"), "{err}");
    // And a folder that is no backup.
    let (ok, _, err) = run_cli(&["--data-dir", &data_arg, "restore", &data_arg]);
    assert!(!ok);
    assert!(err.contains("not a whole Flowgate backup"), "{err}");

    terminate(&mut d);
    let (ok, restored, err) = run_cli(&["--data-dir", &data_arg, "restore", &folder]);
    assert!(ok, "{err}");
    let set_aside = restored["set_aside"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        set_aside.iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.contains("flowgate.redb.before-restore-"))),
        "the replaced store is kept: {restored}"
    );

    let d = start_in(folder_of(d), 1 << 20);
    let (status, after) = d.call(
        "GET",
        &format!("/api/v1/instances/{approved}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["instance"], before["instance"], "restored as it was");
    let auto_id = auto["id"].as_str().unwrap_or_default();
    let (status, _) = d.call(
        "GET",
        &format!("/api/v1/instances/{auto_id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = d.call(
        "GET",
        &format!("/api/v1/instances/{later}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(
        status, 404,
        "an instance started after the backup is not restored"
    );
    // The restored daemon works on: the approved request's procurement task completes.
    let order = d.task_for(&approved, "procurement");
    let by = json!({"id": "pat", "roles": ["procurement"]});
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{order}/complete"),
        Some(ACME_ADMIN),
        Some(json!({"by": by, "data": {"po_number": "PO-1"}})),
    );
    assert_eq!(status, 200, "{body}");
}
