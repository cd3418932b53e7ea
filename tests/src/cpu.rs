//! CPU time used by a process, for benchmarks that share the machine's cores between a load
//! driver and the daemon: throughput alone would charge the driver's work to the daemon.

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat` (Linux,
/// where the clock tick is 100 Hz); `None` elsewhere.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with the state, field 3.
    let rest: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
