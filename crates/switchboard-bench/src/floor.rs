//! `switchboard bench floor`: this machine's own limit, measured in the same run as the server's
//! costs. A chat server delivers a message by writing it to a socket, and takes a message in by
//! reading one; whatever else it does, the kernel charges it for those calls. This scenario times
//! nothing but them: a writer thread writes one small frame to each of many connected loopback TCP
//! sockets, a reader thread reads each back (plain blocking `write`/`read` calls, no WebSocket, no
//! JSON, no runtime), and each thread's own CPU time gives µs per call. The other scenarios print
//! their server cost as a multiple of this floor (`--floor` or `--floor-us`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::report;

/// Pairs and frame size of the quick measurement behind `--floor`.
const QUICK_PAIRS: u32 = 1000;
const QUICK_FRAME_BYTES: u32 = 100;
const QUICK_DURATION: Duration = Duration::from_secs(1);

/// Options of `switchboard bench floor`.
#[derive(clap::Args, Debug, Clone)]
pub struct FloorArgs {
    /// Connected loopback TCP pairs (two sockets each), written and read in turn.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=9000))]
    pub connections: u32,
    /// Bytes in one frame.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub size: u32,
    /// Frames written to a socket in one write (and read in one read) in the batched variant.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub batch: u32,
    /// How long to run each variant (one frame per call, then the batched one).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: u64,
    /// Also print all figures as one JSON line on stdout (the human summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// What one variant measured: `frames_per_call` frames of `size` bytes per write and per read.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Variant {
    pub frames_per_call: u32,
    pub writes: u64,
    pub reads: u64,
    pub write_cpu_secs: f64,
    pub read_cpu_secs: f64,
    /// CPU µs per write call and per read call.
    pub write_us: f64,
    pub read_us: f64,
    /// The same per frame.
    pub write_us_per_frame: f64,
    pub read_us_per_frame: f64,
}

/// Everything `floor` measured; the `--json` line.
#[derive(Debug, Serialize)]
pub struct FloorReport {
    pub scenario: &'static str,
    pub connections: u32,
    pub size: u32,
    pub batch: u32,
    pub duration_secs: u64,
    /// CPU µs of one `size`-byte write, and of one read.
    pub write_us: f64,
    pub read_us: f64,
    /// With `batch` frames per call: CPU µs per frame.
    pub batched_write_us_per_frame: f64,
    pub batched_read_us_per_frame: f64,
    /// A persisted private message's socket work: read the send, write the delivery, write the
    /// ack (µs, so also CPU seconds per million messages).
    pub pm_message_us: f64,
    /// A room delivery's: one write.
    pub delivery_us: f64,
    pub single: Variant,
    pub batched: Variant,
}

/// This machine's floor: the CPU µs the kernel takes for one small write and for one read on a
/// loopback TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FloorCost {
    pub write_us: f64,
    pub read_us: f64,
}

impl FloorCost {
    /// The floor of `reads` reads and `writes` writes, in µs (so also seconds per million).
    pub fn of(&self, reads: f64, writes: f64) -> f64 {
        reads * self.read_us + writes * self.write_us
    }

    /// How many times the floor a server cost is: `cpu_secs_per_million` units, each needing
    /// `reads` reads and `writes` writes.
    pub fn multiple(&self, cpu_secs_per_million: Option<f64>, reads: f64, writes: f64) -> Option<f64> {
        report::ratio(cpu_secs_per_million?, self.of(reads, writes))
    }
}

/// ` (12.3× floor)`, or nothing.
pub fn times(multiple: Option<f64>) -> String {
    multiple.map(|multiple| format!(" ({multiple:.2}× floor)")).unwrap_or_default()
}

/// The floor options of the other scenarios: measure it first, or take it from an earlier
/// `switchboard bench floor`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FloorOption {
    /// Measure this machine's floor first (about 1 s of bare writes and reads on 1000 loopback TCP
    /// pairs) and print the server's CPU as a multiple of it.
    #[arg(long, conflicts_with = "floor_us")]
    pub floor: bool,
    /// This machine's floor in µs of CPU per small socket write (from `switchboard bench floor`):
    /// print the server's CPU as a multiple of it.
    #[arg(long, value_name = "US", value_parser = crate::positive_rate)]
    pub floor_us: Option<f64>,
    /// With --floor-us: µs of CPU per socket read (default: the same as a write).
    #[arg(long, value_name = "US", requires = "floor_us", value_parser = crate::positive_rate)]
    pub floor_read_us: Option<f64>,
}

impl FloorOption {
    /// The floor to compare with, measured now for `--floor`.
    pub async fn cost(&self) -> anyhow::Result<Option<FloorCost>> {
        if let Some(write_us) = self.floor_us {
            return Ok(Some(FloorCost { write_us, read_us: self.floor_read_us.unwrap_or(write_us) }));
        }
        if !self.floor {
            return Ok(None);
        }
        let variant = tokio::task::spawn_blocking(|| {
            let mut pairs = Pairs::open(QUICK_PAIRS)?;
            pairs.measure(QUICK_FRAME_BYTES as usize, 1, QUICK_DURATION, None)
        })
        .await
        .context("the floor measurement panicked")??;
        let cost = FloorCost { write_us: variant.write_us, read_us: variant.read_us };
        eprintln!(
            "floor: {:.2} µs CPU per {QUICK_FRAME_BYTES}-byte write, {:.2} µs per read ({QUICK_PAIRS} loopback TCP pairs)",
            cost.write_us, cost.read_us
        );
        Ok(Some(cost))
    }
}

pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    let json = args.json;
    let report =
        tokio::task::spawn_blocking(move || measure(&args)).await.context("the floor measurement panicked")??;
    report::print(&summary(&report), &report, json)
}

/// Runs both variants (blocking: call it from a thread of its own).
pub fn measure(args: &FloorArgs) -> anyhow::Result<FloorReport> {
    eprintln!(
        "floor: {} loopback TCP pairs, {}-byte frames, {} s per variant",
        args.connections, args.size, args.duration_secs
    );
    let mut pairs = Pairs::open(args.connections)?;
    let duration = Duration::from_secs(args.duration_secs);
    let size = args.size as usize;
    let single = pairs.measure(size, 1, duration, Some("1 frame per call"))?;
    let label = format!("{} frames per call", args.batch);
    let batched = pairs.measure(size, args.batch, duration, Some(&label))?;
    Ok(FloorReport {
        scenario: "floor",
        connections: args.connections,
        size: args.size,
        batch: args.batch,
        duration_secs: args.duration_secs,
        write_us: single.write_us,
        read_us: single.read_us,
        batched_write_us_per_frame: batched.write_us_per_frame,
        batched_read_us_per_frame: batched.read_us_per_frame,
        pm_message_us: single.read_us + 2.0 * single.write_us,
        delivery_us: single.write_us,
        single,
        batched,
    })
}

/// Connected loopback TCP pairs: what the writer writes to and what the reader reads from.
struct Pairs {
    write_ends: Vec<TcpStream>,
    read_ends: Vec<TcpStream>,
}

impl Pairs {
    fn open(count: u32) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback listener")?;
        let addr = listener.local_addr()?;
        let mut pairs = Pairs { write_ends: Vec::with_capacity(count as usize), read_ends: Vec::new() };
        for _ in 0..count {
            let write_end = TcpStream::connect(addr).context("connecting a loopback pair (open-files limit?)")?;
            let (read_end, _) = listener.accept().context("accepting a loopback pair")?;
            // As a server's sockets: every write goes out at once.
            write_end.set_nodelay(true)?;
            read_end.set_nodelay(true)?;
            pairs.write_ends.push(write_end);
            pairs.read_ends.push(read_end);
        }
        Ok(pairs)
    }

    /// Rounds until `duration` is over: the writer thread writes `frames` frames of `size` bytes
    /// in one call to every socket, then the reader thread reads them back with one call per
    /// socket (so no call waits: writes never fill a buffer, reads always find their bytes). Each
    /// thread's CPU time over its calls gives the cost per call. With a `label`, progress goes to
    /// stderr once a second.
    fn measure(
        &mut self,
        size: usize,
        frames: u32,
        duration: Duration,
        label: Option<&str>,
    ) -> anyhow::Result<Variant> {
        let bytes = size * frames as usize;
        let sockets = self.write_ends.len() as u64;
        let rounds = AtomicU64::new(0);
        let (written_tx, written_rx) = mpsc::sync_channel::<()>(1);
        let (read_tx, read_rx) = mpsc::sync_channel::<()>(1);
        let (write_ends, read_ends) = (&mut self.write_ends, &mut self.read_ends);
        let started = Instant::now();
        let (writer, reader) = std::thread::scope(|scope| {
            let rounds = &rounds;
            let writer = scope.spawn(move || -> std::io::Result<(u64, u64)> {
                let frame = vec![b'x'; bytes];
                let cpu_before = report::thread_cpu_nanos().unwrap_or(0);
                let mut writes = 0;
                while started.elapsed() < duration {
                    for socket in write_ends.iter_mut() {
                        socket.write_all(&frame)?;
                    }
                    writes += sockets;
                    rounds.fetch_add(1, Ordering::Relaxed);
                    if written_tx.send(()).is_err() || read_rx.recv().is_err() {
                        break;
                    }
                }
                Ok((writes, report::thread_cpu_nanos().unwrap_or(0).saturating_sub(cpu_before)))
            });
            let reader = scope.spawn(move || -> std::io::Result<(u64, u64)> {
                let mut frame = vec![0u8; bytes];
                let cpu_before = report::thread_cpu_nanos().unwrap_or(0);
                let mut reads = 0;
                while written_rx.recv().is_ok() {
                    for socket in read_ends.iter_mut() {
                        socket.read_exact(&mut frame)?;
                    }
                    reads += sockets;
                    if read_tx.send(()).is_err() {
                        break;
                    }
                }
                Ok((reads, report::thread_cpu_nanos().unwrap_or(0).saturating_sub(cpu_before)))
            });
            let mut next_line = Duration::from_secs(1);
            while !(writer.is_finished() && reader.is_finished()) {
                std::thread::sleep(Duration::from_millis(20));
                if let Some(label) = label.filter(|_| started.elapsed() >= next_line) {
                    next_line += Duration::from_secs(1);
                    let done = rounds.load(Ordering::Relaxed);
                    eprintln!(
                        "[{:6.1}s] {label}: {done} rounds, {} writes and reads",
                        started.elapsed().as_secs_f64(),
                        done * sockets
                    );
                }
            }
            (writer.join(), reader.join())
        });
        let (writes, write_nanos) = writer.map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
        let (reads, read_nanos) = reader.map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
        let per = |nanos: u64, calls: u64| report::ratio(nanos as f64 / 1000.0, calls as f64).unwrap_or(0.0);
        let (write_us, read_us) = (per(write_nanos, writes), per(read_nanos, reads));
        Ok(Variant {
            frames_per_call: frames,
            writes,
            reads,
            write_cpu_secs: write_nanos as f64 / 1e9,
            read_cpu_secs: read_nanos as f64 / 1e9,
            write_us,
            read_us,
            write_us_per_frame: write_us / f64::from(frames),
            read_us_per_frame: read_us / f64::from(frames),
        })
    }
}

/// The human summary.
pub fn summary(report: &FloorReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (single, batched) = (&report.single, &report.batched);
    let _ = writeln!(
        out,
        "floor: {} loopback TCP pairs, {}-byte frames, plain blocking write/read, {} s per variant",
        report.connections, report.size, report.duration_secs
    );
    let _ = writeln!(
        out,
        "  1 frame per call   write {:.2} µs CPU, read {:.2} µs CPU ({} writes, {} reads)",
        single.write_us, single.read_us, single.writes, single.reads
    );
    let _ = writeln!(
        out,
        "  {} frames per call  write {:.2} µs per frame ({:.2} µs per call), read {:.2} µs per frame ({:.2} µs per call)",
        report.batch, batched.write_us_per_frame, batched.write_us, batched.read_us_per_frame, batched.read_us
    );
    let _ = writeln!(
        out,
        "  private message    1 read + 2 writes = {:.2} µs: {:.2} s CPU per million messages at the least",
        report.pm_message_us, report.pm_message_us
    );
    let _ = writeln!(
        out,
        "  room delivery      1 write = {:.2} µs: {:.2} s CPU per million deliveries at the least",
        report.delivery_us, report.delivery_us
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_pairs_measure_a_positive_cost() {
        let mut pairs = Pairs::open(4).unwrap();
        let variant = pairs.measure(100, 2, Duration::from_millis(50), None).unwrap();
        assert!(variant.writes > 0 && variant.reads == variant.writes);
        assert!(variant.write_us > 0.0 && variant.read_us > 0.0);
        assert_eq!(variant.write_us_per_frame, variant.write_us / 2.0);
    }

    #[test]
    fn costs_are_compared_with_the_floor() {
        let floor = FloorCost { write_us: 6.0, read_us: 4.0 };
        assert_eq!(floor.of(1.0, 2.0), 16.0);
        assert_eq!(floor.multiple(Some(32.0), 1.0, 2.0), Some(2.0));
        assert_eq!(floor.multiple(None, 1.0, 2.0), None);
        assert_eq!(times(Some(2.0)), " (2.00× floor)");
        assert_eq!(times(None), "");
    }
}
