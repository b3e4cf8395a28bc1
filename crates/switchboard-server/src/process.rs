//! The process's own cost, read from procfs: what `switchboard bench` divides work by.

/// Linux reports process CPU times in clock ticks of 1/100 s (USER_HZ) on every architecture
/// Switchboard runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds of the whole process (all threads).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after it start after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// Resident set size in bytes.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_figures_are_read() {
        // Busy until the kernel has charged this process a clock tick: on a loaded machine a
        // fixed 30 ms of wall time may not be one.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut spin = 0u64;
        while cpu_seconds().unwrap() == 0.0 && std::time::Instant::now() < give_up {
            spin = spin.wrapping_add(1);
        }
        assert!(cpu_seconds().unwrap() > 0.0, "no CPU time after {spin} rounds");
        assert!(resident_memory_bytes().unwrap() > 1024 * 1024);
    }
}
