//! `switchboard bench chart`: SVG charts of the scenarios' `--json` lines, for
//! `docs/benchmarks.md`.
//!
//! Every input line is one scenario's JSON report, optionally tagged by `scripts/bench-peers.sh`
//! with `system` (`switchboard`, `ws`, `socketio`), `case`, `nodes`, `store` and `bus`. A line is
//! parsed into a [`Run`]: its system, its case (the tag, or one made of the line's own sizes) and
//! the few figures the charts use. Lines of other scenarios (or without one) are skipped; so is a
//! line that is not JSON (an interrupted run's last line), with a warning. A later line of the same
//! system and case replaces an earlier one (fan-out steps are merged by rate).
//!
//! Charts (each written only when its data is there):
//! - `fanout-cpu.svg`: server CPU-s per million deliveries against deliveries/s, a line per system,
//!   a panel per case, with the floor of one write (and of a batched write) when known;
//! - `fanout-latency.svg`: send -> receive p50 and p99 against deliveries/s;
//! - `pm-cpu.svg`: server CPU-s per million messages, bars per case and system, with the floor of
//!   one read and two writes;
//! - `idle.svg`: RSS per connection, connects/s and handshake latency;
//! - `storm.svg`: time to recover, lost / doubled messages, CPU per reconnect;
//! - `presence.svg`: online / offline latency, missed / extra events, CPU per million events.
//!
//! Only plotters' SVG backend is used, without its font features: text is written as SVG `<text>`
//! and laid out by whatever displays the file, so no system font library is needed.

use std::path::{Path, PathBuf};

use anyhow::Context;

mod panels;
mod parse;
mod render;
mod soak;

use panels::{fanout_cpu, fanout_latency, idle, pm_cpu, presence, storm, Data, Palette};
pub use parse::{
    count_by_scenario, parse_line, parse_lines, FanoutLine, Figures, FloorCost, FloorLine, IdleLine, Percentiles,
    PmLine, PresenceLine, Run, Server, StepLine, StormLine,
};
use render::{render, Chart};

/// `switchboard bench chart`.
#[derive(clap::Args, Debug)]
pub struct ChartArgs {
    /// A file of JSON lines written by the scenarios' `--json` (or by `scripts/bench-peers.sh`);
    /// repeat for several files.
    #[arg(long = "input", value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where the SVG files go (created if missing; existing charts are overwritten).
    #[arg(long, value_name = "DIR", default_value = "docs/charts")]
    pub out_dir: PathBuf,
    /// This machine's floor, µs of CPU per socket write (from `switchboard bench floor`), drawn
    /// with the costs per delivery, message and event. By default the last `floor` line of the
    /// inputs, or the floor a `--floor` run recorded.
    #[arg(long, value_name = "US", value_parser = positive_micros)]
    pub floor_us: Option<f64>,
    /// µs per socket read, with `--floor-us` (default the same as a write).
    #[arg(long, value_name = "US", value_parser = positive_micros, requires = "floor_us")]
    pub floor_read_us: Option<f64>,
    /// The system of lines without a `system` tag.
    #[arg(long, default_value = "switchboard")]
    pub system: String,
}

fn positive_micros(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(us) if us.is_finite() && us > 0.0 => Ok(us),
        _ => Err(format!("{text:?} is not a number of µs above zero")),
    }
}

/// Reads the inputs and writes the charts their lines have data for.
pub fn run(args: ChartArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    let mut soak = Vec::new();
    for input in &args.inputs {
        let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
        soak.extend(text.lines().filter_map(|line| serde_json::from_str::<soak::SoakSample>(line).ok()));
        let (mut parsed, skipped, bad) = parse_lines(&text, &args.system);
        for (line, error) in &bad {
            eprintln!("warning: {}:{line}: skipped, {error}", input.display());
        }
        let counts: Vec<String> =
            count_by_scenario(&parsed).iter().map(|(scenario, runs)| format!("{runs} {scenario}")).collect();
        eprintln!(
            "{}: {}; {skipped} lines of other scenarios skipped",
            input.display(),
            if counts.is_empty() { "no runs".to_string() } else { counts.join(", ") }
        );
        runs.append(&mut parsed);
    }
    let floor = args.floor_us.map(|write_us| (write_us, args.floor_read_us.unwrap_or(write_us)));
    let mut written = write_charts(&runs, floor, &args.out_dir)?;
    if let Some(chart) = soak::chart(&soak) {
        written.push(write_chart(&chart, &args.out_dir)?);
    }
    anyhow::ensure!(!written.is_empty(), "nothing to chart: no line of idle, pm, fanout, storm, presence or soak");
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes every chart the runs have data for into `out_dir`; returns the files written. `floor`:
/// µs per write and per read, instead of the floor the runs have.
pub fn write_charts(runs: &[Run], floor: Option<(f64, f64)>, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let data = Data { runs };
    let palette = Palette::new(runs);
    let floor = data.floor(floor);
    let charts = [
        fanout_cpu(&data, &palette, floor),
        fanout_latency(&data, &palette),
        pm_cpu(&data, &palette, floor),
        idle(&data, &palette),
        storm(&data, &palette),
        presence(&data, &palette, floor),
    ];
    charts.into_iter().flatten().map(|chart| write_chart(&chart, out_dir)).collect()
}

fn write_chart(chart: &Chart, out_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join(chart.file);
    let svg = render(chart).with_context(|| format!("drawing {}", chart.file))?;
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn fanout(system: &str, case: &str, steps: &[(f64, f64, f64, bool)], broker: Option<f64>) -> String {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|&(rate, per_sec, cpu, kept_up)| {
                serde_json::json!({
                    "rate": rate, "deliveries_per_sec": per_sec, "arrived": per_sec * 8.0, "kept_up": kept_up,
                    "latency": {"count": 10, "p50_ms": 7.1, "p90_ms": 14.0, "p99_ms": 22.1, "max_ms": 56.0, "mean_ms": 8.0},
                    "server": {"cpu_seconds": cpu, "deliveries": per_sec * 8.0, "broker_cpu_seconds": broker,
                               "rss_bytes": [21929984]},
                    "server_cpu_secs_per_million_deliveries": cpu / (per_sec * 8.0) * 1e6,
                })
            })
            .collect();
        serde_json::json!({
            "system": system, "case": case, "nodes": 1, "scenario": "fanout", "urls": ["ws://127.0.0.1:1/ws"],
            "members": 1000, "senders": 2, "steps": steps, "floor": null,
        })
        .to_string()
    }

    pub(super) fn pm(system: Option<&str>, rate: f64, cpu: f64, broker: Option<f64>) -> String {
        let mut line = serde_json::json!({
            "scenario": "pm", "urls": ["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"], "pairs": 1000, "rate": rate,
            "sent": 8000, "lost": 0, "duplicates": 0,
            "server": {"cpu_seconds": cpu, "broker_cpu_seconds": broker},
            "server_cpu_secs_per_million_messages": cpu / 8000.0 * 1e6,
        });
        if let Some(system) = system {
            line["system"] = system.into();
        }
        line.to_string()
    }

    fn idle(system: &str, rss: f64, rate: f64) -> String {
        serde_json::json!({
            "system": system, "case": "idle 18000", "scenario": "idle", "url": "ws://127.0.0.1:1/ws",
            "connections": 18000, "opened": 18000, "connect_rate": rate,
            "handshake": {"count": 18000, "p50_ms": 53.4, "p90_ms": 67.3, "p99_ms": 108.6, "max_ms": 121.8, "mean_ms": 52.5},
            "server_rss_per_connection_bytes": rss,
        })
        .to_string()
    }

    /// Whether the SVG has a text element of exactly this text.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    fn out_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("switchboard-chart-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|error| panic!("{file}: {error}"))
    }

    #[test]
    fn charts_are_written_for_the_scenarios_present() {
        let text = [
            idle("switchboard", 3983.0, 2420.0),
            idle("ws", 6142.0, 2632.0),
            idle("socketio", 13776.0, 2118.0),
            fanout(
                "switchboard",
                "fanout 1000 members, 1 node",
                &[(20.0, 19980.0, 1.28, true), (50.0, 49950.0, 3.05, true)],
                None,
            ),
            fanout(
                "ws",
                "fanout 1000 members, 1 node",
                &[(20.0, 19980.0, 1.44, true), (50.0, 49950.0, 3.5, false)],
                None,
            ),
            fanout("socketio", "fanout 1000 members, 1 node", &[(20.0, 19980.0, 2.3, true)], None),
            // A later run of the same system and case adds a step.
            fanout("socketio", "fanout 1000 members, 1 node", &[(50.0, 50164.0, 5.0, true)], None),
            fanout("switchboard", "fanout 1000 members, 2 nodes", &[(20.0, 19980.0, 1.4, true)], Some(0.03)),
            pm(Some("switchboard"), 1000.0, 2.16, None),
            pm(Some("ws"), 1000.0, 0.76, None),
            pm(Some("socketio"), 4000.0, 2.5, Some(0.7)),
        ]
        .join("\n");
        let (runs, _, bad) = parse_lines(&text, "switchboard");
        assert!(bad.is_empty(), "{bad:?}");
        let dir = out_dir("present");
        let written = write_charts(&runs, Some((4.8, 4.8)), &dir).unwrap();
        let names: Vec<_> = written.iter().map(|path| path.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["fanout-cpu.svg", "fanout-latency.svg", "pm-cpu.svg", "idle.svg"]);
        for name in names {
            let svg = read(&dir, name);
            assert!(svg.starts_with("<svg"), "{name}");
            for system in ["Switchboard", "ws peer", "Socket.IO peer"] {
                assert!(has_text(&svg, system), "{name} has no {system}");
            }
        }
        let cpu = read(&dir, "fanout-cpu.svg");
        assert!(cpu.contains("1000 members, 1 node") && cpu.contains("1000 members, 2 nodes"));
        assert!(cpu.contains("floor: 1 write per delivery, 4.80 µs"));
        assert!(cpu.contains("rate not kept up"));
        assert!(has_text(&read(&dir, "fanout-latency.svg"), "p99"));
        let pm = read(&dir, "pm-cpu.svg");
        assert!(pm.contains("floor: 1 read + 2 writes per message, 14.4 µs"));
        assert!(pm.contains("the broker"));
        assert!(has_text(&pm, "270"), "Switchboard's bar is labelled with its CPU-s per million");
        assert!(read(&dir, "idle.svg").contains("3.89"), "RSS per connection in KiB");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn storm_and_presence_are_charted_when_present() {
        let text = [
            r#"{"scenario": "storm", "urls": ["ws://127.0.0.1:1/ws"], "clients": 200, "recovered": 200,
                "recovery": {"count": 200, "p50_ms": 39.1, "p90_ms": 48.8, "p99_ms": 48.8, "max_ms": 48.8, "mean_ms": 38.2},
                "all_recovered_secs": 0.0489, "lost": 0, "doubled": 0, "server_cpu_ms_per_reconnect": 0.25}"#,
            r#"{"scenario": "presence", "urls": ["ws://127.0.0.1:1/ws"], "watchers": 50, "rate": 10.0,
                "online_latency": {"count": 1000, "p50_ms": 1.17, "p90_ms": 1.99, "p99_ms": 6.36, "max_ms": 6.4, "mean_ms": 1.6},
                "offline_latency": null, "missed": 0, "extra": 2, "events_in_window": 2211,
                "server": {"cpu_seconds": 0.02}, "server_cpu_secs_per_million_events": 9.04,
                "floor": {"write_us": 4.26, "read_us": 3.35}}"#,
        ]
        .map(|line| line.replace('\n', " "))
        .join("\n");
        let (runs, _, bad) = parse_lines(&text, "switchboard");
        assert!(bad.is_empty(), "{bad:?}");
        let dir = out_dir("storm");
        let written = write_charts(&runs, None, &dir).unwrap();
        assert_eq!(written, [dir.join("storm.svg"), dir.join("presence.svg")]);
        let storm = read(&dir, "storm.svg");
        assert!(storm.contains("200 clients, 1 node") && has_text(&storm, "0 / 0") && has_text(&storm, "Switchboard"));
        let presence = read(&dir, "presence.svg");
        assert!(presence.contains("50 watchers, 10 logins/s, 1 node"));
        assert!(has_text(&presence, "0 / 2"), "missed / extra");
        assert!(presence.contains("floor: 1 write per event, 4.26 µs"), "the floor the run recorded");
        assert!(!presence.contains("user_offline at"), "no offline latency, no panel");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(write_charts(&[], None, &out_dir("none")).unwrap().is_empty());
    }
}
