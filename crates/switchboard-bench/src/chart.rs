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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

mod soak;

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

// ---------------------------------------------------------------------------------------------
// The lines.

/// One JSON line: which system, which case, and its scenario's figures.
#[derive(Debug, Clone)]
pub struct Run {
    pub system: String,
    pub case: String,
    pub figures: Figures,
}

/// The figures the charts use, per scenario.
#[derive(Debug, Clone)]
pub enum Figures {
    Idle(IdleLine),
    Pm(PmLine),
    Fanout(FanoutLine),
    Storm(StormLine),
    Presence(PresenceLine),
    Floor(FloorLine),
}

impl Figures {
    fn scenario(&self) -> &'static str {
        match self {
            Figures::Idle(_) => "idle",
            Figures::Pm(_) => "pm",
            Figures::Fanout(_) => "fanout",
            Figures::Storm(_) => "storm",
            Figures::Presence(_) => "presence",
            Figures::Floor(_) => "floor",
        }
    }
}

/// The tags of every line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tags {
    scenario: Option<String>,
    system: Option<String>,
    case: Option<String>,
    nodes: Option<f64>,
    urls: Option<Vec<String>>,
}

/// p50 and p99 of a latency, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `/metrics` deltas over a window: the nodes' CPU, deliveries, and the broker's CPU.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    pub cpu_seconds: Option<f64>,
    pub deliveries: Option<f64>,
    pub broker_cpu_seconds: Option<f64>,
}

/// A floor recorded by a `--floor` run.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct FloorCost {
    pub write_us: f64,
    pub read_us: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IdleLine {
    pub connections: Option<f64>,
    pub opened: Option<f64>,
    pub connect_rate: Option<f64>,
    pub handshake: Option<Percentiles>,
    pub server_rss_per_connection_bytes: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PmLine {
    pub pairs: Option<f64>,
    pub rate: Option<f64>,
    pub sent: Option<f64>,
    pub server: Server,
    pub server_cpu_secs_per_million_messages: Option<f64>,
    pub floor: Option<FloorCost>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FanoutLine {
    pub members: Option<f64>,
    pub steps: Vec<StepLine>,
    pub floor: Option<FloorCost>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StepLine {
    pub rate: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub arrived: Option<f64>,
    pub kept_up: Option<bool>,
    pub latency: Option<Percentiles>,
    pub server: Server,
    pub server_cpu_secs_per_million_deliveries: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StormLine {
    pub clients: Option<f64>,
    pub recovery: Option<Percentiles>,
    pub all_recovered_secs: Option<f64>,
    pub lost: Option<f64>,
    pub doubled: Option<f64>,
    pub server_cpu_ms_per_reconnect: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PresenceLine {
    pub watchers: Option<f64>,
    pub rate: Option<f64>,
    pub online_latency: Option<Percentiles>,
    pub offline_latency: Option<Percentiles>,
    pub missed: Option<f64>,
    pub extra: Option<f64>,
    pub events_in_window: Option<f64>,
    pub server: Server,
    pub server_cpu_secs_per_million_events: Option<f64>,
    pub floor: Option<FloorCost>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FloorLine {
    pub size: Option<f64>,
    pub batch: Option<f64>,
    pub write_us: Option<f64>,
    pub read_us: Option<f64>,
    pub batched_write_us_per_frame: Option<f64>,
}

/// Parses JSON lines: the runs, how many lines were of no chartable scenario, and the lines that
/// could not be read (1-based line number, why).
pub fn parse_lines(text: &str, default_system: &str) -> (Vec<Run>, usize, Vec<(usize, String)>) {
    let (mut runs, mut skipped, mut bad) = (Vec::new(), 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, default_system) {
            Ok(Some(run)) => runs.push(run),
            Ok(None) => skipped += 1,
            Err(error) => bad.push((i + 1, error)),
        }
    }
    (runs, skipped, bad)
}

/// One line: `None` if it is not of a scenario the charts know.
pub fn parse_line(line: &str, default_system: &str) -> Result<Option<Run>, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|error| format!("not JSON: {error}"))?;
    if !value.is_object() {
        return Ok(None);
    }
    let tags = Tags::deserialize(&value).map_err(|error| format!("tags: {error}"))?;
    let Some(scenario) = tags.scenario.as_deref() else { return Ok(None) };
    fn figures<T: for<'de> Deserialize<'de>>(value: &serde_json::Value, scenario: &str) -> Result<T, String> {
        T::deserialize(value).map_err(|error| format!("{scenario} line: {error}"))
    }
    let nodes = tags.nodes.unwrap_or(tags.urls.as_ref().map_or(1, Vec::len) as f64);
    let nodes = if nodes == 1.0 { "1 node".to_string() } else { format!("{nodes} nodes") };
    let n = |value: Option<f64>| value.map_or("?".to_string(), |value| value.to_string());
    let (figures, own_case) = match scenario {
        "idle" => {
            let idle: IdleLine = figures(&value, scenario)?;
            let case = format!("{} connections", n(idle.connections));
            (Figures::Idle(idle), case)
        }
        "pm" => {
            let pm: PmLine = figures(&value, scenario)?;
            let case = format!("{} pairs @ {}/s, {nodes}", n(pm.pairs), n(pm.rate));
            (Figures::Pm(pm), case)
        }
        "fanout" => {
            let fanout: FanoutLine = figures(&value, scenario)?;
            let case = format!("{} members, {nodes}", n(fanout.members));
            (Figures::Fanout(fanout), case)
        }
        "storm" => {
            let storm: StormLine = figures(&value, scenario)?;
            let case = format!("{} clients, {nodes}", n(storm.clients));
            (Figures::Storm(storm), case)
        }
        "presence" => {
            let presence: PresenceLine = figures(&value, scenario)?;
            let case = format!("{} watchers, {} logins/s, {nodes}", n(presence.watchers), n(presence.rate));
            (Figures::Presence(presence), case)
        }
        "floor" => {
            let floor: FloorLine = figures(&value, scenario)?;
            let case = format!("{} B", n(floor.size));
            (Figures::Floor(floor), case)
        }
        _ => return Ok(None),
    };
    // The tag names the scenario first ("fanout 1000 members, 1 node"); the chart says it already.
    // A bare number left ("idle 18000") says less than the line's own sizes.
    let case = match tags.case {
        Some(case) => match case.strip_prefix(&format!("{scenario} ")).map(str::trim) {
            Some(rest) if rest.parse::<f64>().is_ok() => own_case,
            // "1000 pairs @ 4000/s, 1 node": the rate and nodes tell cases apart, and long labels
            // run into each other under grouped bars.
            Some(rest) if scenario == "pm" && rest.contains(" @ ") => {
                rest.split_once(" @ ").map_or(rest, |(_, after)| after).to_string()
            }
            Some(rest) if !rest.is_empty() => rest.to_string(),
            _ => case,
        },
        None => own_case,
    };
    let system = tags.system.unwrap_or_else(|| default_system.to_string());
    Ok(Some(Run { system, case, figures }))
}

// ---------------------------------------------------------------------------------------------
// Picking the data.

/// The runs, ordered and looked up by system and case.
struct Data<'a> {
    runs: &'a [Run],
}

impl<'a> Data<'a> {
    /// The runs of one scenario, a later one of the same system and case replacing an earlier one.
    fn of(&self, scenario: &str) -> Vec<&'a Run> {
        let mut picked: Vec<&Run> = Vec::new();
        for run in self.runs.iter().filter(|run| run.figures.scenario() == scenario) {
            match picked.iter_mut().find(|old| old.system == run.system && old.case == run.case) {
                Some(old) => *old = run,
                None => picked.push(run),
            }
        }
        picked
    }

    /// Cases in the order they first appear.
    fn cases(runs: &[&Run]) -> Vec<String> {
        let mut cases: Vec<String> = Vec::new();
        for run in runs {
            if !cases.contains(&run.case) {
                cases.push(run.case.clone());
            }
        }
        cases
    }

    /// Systems: Switchboard and the peers first, then others as they first appear.
    fn systems(runs: &[&Run]) -> Vec<String> {
        let mut systems: Vec<String> = Vec::new();
        for (known, _, _) in KNOWN_SYSTEMS {
            if runs.iter().any(|run| run.system == known) {
                systems.push(known.to_string());
            }
        }
        for run in runs {
            if !systems.contains(&run.system) {
                systems.push(run.system.clone());
            }
        }
        systems
    }

    fn pick<'r>(runs: &[&'r Run], system: &str, case: &str) -> Option<&'r Run> {
        runs.iter().rev().find(|run| run.system == system && run.case == case).copied()
    }

    /// The fan-out steps of a system and case, over all its lines (a later step of the same rate
    /// replaces an earlier one), by deliveries per second.
    fn fanout_steps(&self, system: &str, case: &str) -> Vec<&'a StepLine> {
        let mut by_rate: Vec<&StepLine> = Vec::new();
        for run in self.runs.iter().filter(|run| run.system == system && run.case == case) {
            let Figures::Fanout(fanout) = &run.figures else { continue };
            for step in &fanout.steps {
                match by_rate.iter_mut().find(|old| old.rate.is_some() && old.rate == step.rate) {
                    Some(old) => *old = step,
                    None => by_rate.push(step),
                }
            }
        }
        by_rate.retain(|step| step.deliveries_per_sec.is_some_and(f64::is_finite));
        by_rate.sort_by(|a, b| a.deliveries_per_sec.unwrap_or(0.0).total_cmp(&b.deliveries_per_sec.unwrap_or(0.0)));
        by_rate
    }

    /// This machine's floor: the given µs per write and read, else the last `floor` line, else a
    /// floor a scenario recorded.
    fn floor(&self, given: Option<(f64, f64)>) -> Option<Floor> {
        if let Some((write_us, read_us)) = given {
            return Some(Floor { write_us, read_us, batched: None });
        }
        let measured = self.runs.iter().rev().find_map(|run| match &run.figures {
            Figures::Floor(floor) => Some(Floor {
                write_us: floor.write_us?,
                read_us: floor.read_us.or(floor.write_us)?,
                batched: floor.batched_write_us_per_frame.map(|us| (floor.batch.unwrap_or(0.0), us)),
            }),
            _ => None,
        });
        measured.or_else(|| {
            self.runs.iter().find_map(|run| {
                let cost = match &run.figures {
                    Figures::Pm(pm) => pm.floor,
                    Figures::Fanout(fanout) => fanout.floor,
                    Figures::Presence(presence) => presence.floor,
                    _ => None,
                }?;
                Some(Floor { write_us: cost.write_us, read_us: cost.read_us, batched: None })
            })
        })
    }
}

/// The floor the charts draw: µs per write and per read, and per frame written `batch` to a call.
#[derive(Debug, Clone, Copy)]
struct Floor {
    write_us: f64,
    read_us: f64,
    batched: Option<(f64, f64)>,
}

/// CPU seconds per million units: the nodes', and the nodes' and broker's together (`None` without
/// a broker).
fn per_million(server: &Server, units: Option<f64>, nodes_reported: Option<f64>) -> (Option<f64>, Option<f64>) {
    let units = units.filter(|&units| units > 0.0);
    let nodes = match (server.cpu_seconds, units) {
        (Some(cpu), Some(units)) => Some(cpu / units * 1e6),
        _ => nodes_reported,
    };
    let total = match (nodes, server.broker_cpu_seconds, units) {
        (Some(nodes), Some(broker), Some(units)) => Some(nodes + broker / units * 1e6),
        _ => None,
    };
    (nodes, total)
}

// ---------------------------------------------------------------------------------------------
// The charts.

/// Systems with a fixed name and colour; others get the next colour of [`OTHER_COLOURS`].
const KNOWN_SYSTEMS: [(&str, &str, RGBColor); 3] = [
    ("switchboard", "Switchboard", RGBColor(37, 99, 235)),
    ("ws", "ws peer", RGBColor(234, 88, 12)),
    ("socketio", "Socket.IO peer", RGBColor(22, 163, 74)),
];
const OTHER_COLOURS: [RGBColor; 4] =
    [RGBColor(147, 51, 234), RGBColor(219, 39, 119), RGBColor(8, 145, 178), RGBColor(120, 113, 108)];
const FLOOR_COLOUR: RGBColor = RGBColor(64, 64, 64);
const BATCHED_FLOOR_COLOUR: RGBColor = RGBColor(150, 150, 150);
const FONT: &str = "sans-serif";

/// A system's name and colour in the charts.
struct Palette {
    systems: Vec<(String, String, RGBColor)>,
}

impl Palette {
    fn new(runs: &[Run]) -> Self {
        let all: Vec<&Run> = runs.iter().collect();
        let mut others = OTHER_COLOURS.iter().cycle();
        let systems = Data::systems(&all)
            .into_iter()
            .map(|system| match KNOWN_SYSTEMS.iter().find(|(key, _, _)| *key == system) {
                Some((_, name, colour)) => (system, name.to_string(), *colour),
                None => {
                    let colour = *others.next().unwrap();
                    (system.clone(), system, colour)
                }
            })
            .collect();
        Palette { systems }
    }

    fn colour(&self, system: &str) -> RGBColor {
        self.systems.iter().find(|(key, _, _)| key == system).map_or(FLOOR_COLOUR, |(_, _, colour)| *colour)
    }
}

/// The lighter shade of a colour.
fn light(colour: RGBColor) -> RGBColor {
    let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * 0.6).round() as u8;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// A horizontal reference line.
#[derive(Clone)]
struct RefLine {
    y: f64,
    label: String,
    colour: RGBColor,
}

/// One bar: solid up to `value`, lighter from there up to `upper`, `label` above it.
struct Bar {
    value: f64,
    upper: Option<f64>,
    label: String,
}

/// A panel of grouped bars: a group per case, a bar per system.
struct Bars {
    title: String,
    y_desc: String,
    groups: Vec<String>,
    systems: Vec<String>,
    colours: Vec<RGBColor>,
    /// `[group][system]`.
    bars: Vec<Vec<Option<Bar>>>,
    refs: Vec<RefLine>,
    /// Counts: whole-number ticks only.
    counts: bool,
}

/// A line: a system's points `(x, y, kept up)`, solid or dashed.
struct Line {
    system: String,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64, bool)>,
}

/// A panel of lines over a linear x axis.
struct Lines {
    title: String,
    x_desc: String,
    y_desc: String,
    log_y: bool,
    lines: Vec<Line>,
    refs: Vec<RefLine>,
}

enum Panel {
    Bars(Bars),
    Lines(Lines),
}

/// An entry of a chart's legend.
enum Key {
    Swatch(RGBColor),
    Line(RGBColor, bool),
    Cross,
}

/// One SVG file: a title, a legend, panels side by side (2 × 2 for four).
struct Chart {
    file: &'static str,
    title: String,
    keys: Vec<(Key, String)>,
    panels: Vec<Panel>,
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

/// Legend keys for the systems of the panels, in palette order.
fn system_keys(palette: &Palette, used: &[&str]) -> Vec<(Key, String)> {
    palette
        .systems
        .iter()
        .filter(|(key, _, _)| used.contains(&key.as_str()))
        .map(|(_, name, colour)| (Key::Swatch(*colour), name.clone()))
        .collect()
}

fn ref_keys(panels: &[Panel]) -> Vec<(Key, String)> {
    let mut keys: Vec<(Key, String)> = Vec::new();
    for refs in panels.iter().map(|panel| match panel {
        Panel::Bars(bars) => &bars.refs,
        Panel::Lines(lines) => &lines.refs,
    }) {
        for line in refs {
            if !keys.iter().any(|(_, label)| *label == line.label) {
                keys.push((Key::Line(line.colour, true), line.label.clone()));
            }
        }
    }
    keys
}

fn fanout_floor_refs(floor: Option<Floor>) -> Vec<RefLine> {
    let Some(floor) = floor else { return Vec::new() };
    let mut refs = vec![RefLine {
        y: floor.write_us,
        label: format!("floor: 1 write per delivery, {} µs", fmt_value(floor.write_us)),
        colour: FLOOR_COLOUR,
    }];
    if let Some((batch, us)) = floor.batched {
        let batch = if batch > 0.0 { format!("{batch} frames per write") } else { "batched writes".to_string() };
        refs.push(RefLine {
            y: us,
            label: format!("floor, {batch}: {} µs per frame", fmt_value(us)),
            colour: BATCHED_FLOOR_COLOUR,
        });
    }
    refs
}

fn fanout_cpu(data: &Data, palette: &Palette, floor: Option<Floor>) -> Option<Chart> {
    let runs = data.of("fanout");
    let systems = Data::systems(&runs);
    let mut panels = Vec::new();
    let mut any_missed = false;
    for case in Data::cases(&runs) {
        let mut lines = Vec::new();
        let mut broker = false;
        for system in &systems {
            let points: Vec<(f64, f64, bool)> = data
                .fanout_steps(system, &case)
                .into_iter()
                .filter_map(|step| {
                    let units = step.server.deliveries.or(step.arrived);
                    let (nodes, total) = per_million(&step.server, units, step.server_cpu_secs_per_million_deliveries);
                    broker |= total.is_some();
                    Some((step.deliveries_per_sec?, total.or(nodes)?, step.kept_up.unwrap_or(true)))
                })
                .collect();
            any_missed |= points.iter().any(|&(_, _, kept_up)| !kept_up);
            if !points.is_empty() {
                lines.push(Line { system: system.clone(), colour: palette.colour(system), dashed: false, points });
            }
        }
        if !lines.is_empty() {
            panels.push(Panel::Lines(Lines {
                title: if broker { format!("{case} (broker included)") } else { case },
                x_desc: "deliveries/s".into(),
                y_desc: "server CPU-s per million deliveries (µs each)".into(),
                log_y: false,
                lines,
                refs: fanout_floor_refs(floor),
            }));
        }
    }
    if panels.is_empty() {
        return None;
    }
    let used = used_systems(&panels);
    let mut keys = system_keys(palette, &used);
    keys.extend(ref_keys(&panels));
    if any_missed {
        keys.push((Key::Cross, "rate not kept up".into()));
    }
    Some(Chart { file: "fanout-cpu.svg", title: "Room fan-out: server CPU per delivery".into(), keys, panels })
}

fn fanout_latency(data: &Data, palette: &Palette) -> Option<Chart> {
    let runs = data.of("fanout");
    let systems = Data::systems(&runs);
    let mut panels = Vec::new();
    let mut any_missed = false;
    for case in Data::cases(&runs) {
        let mut lines = Vec::new();
        for system in &systems {
            let steps = data.fanout_steps(system, &case);
            for p99 in [false, true] {
                let points: Vec<(f64, f64, bool)> = steps
                    .iter()
                    .filter_map(|step| {
                        let latency = step.latency?;
                        let ms = if p99 { latency.p99_ms } else { latency.p50_ms };
                        Some((step.deliveries_per_sec?, ms, step.kept_up.unwrap_or(true)))
                    })
                    .filter(|&(_, ms, _)| ms > 0.0)
                    .collect();
                any_missed |= points.iter().any(|&(_, _, kept_up)| !kept_up);
                if !points.is_empty() {
                    lines.push(Line { system: system.clone(), colour: palette.colour(system), dashed: p99, points });
                }
            }
        }
        if !lines.is_empty() {
            panels.push(Panel::Lines(Lines {
                title: case,
                x_desc: "deliveries/s".into(),
                y_desc: "send → receive latency (ms, log scale)".into(),
                log_y: true,
                lines,
                refs: Vec::new(),
            }));
        }
    }
    if panels.is_empty() {
        return None;
    }
    let used = used_systems(&panels);
    let mut keys = system_keys(palette, &used);
    keys.push((Key::Line(FLOOR_COLOUR, false), "p50".into()));
    keys.push((Key::Line(FLOOR_COLOUR, true), "p99".into()));
    if any_missed {
        keys.push((Key::Cross, "rate not kept up".into()));
    }
    Some(Chart { file: "fanout-latency.svg", title: "Room fan-out: latency, every delivery".into(), keys, panels })
}

/// Grouped bars over the cases of a scenario, a bar per system; `None` if no bar has a value.
fn bars(
    palette: &Palette,
    runs: &[&Run],
    title: &str,
    y_desc: &str,
    refs: Vec<RefLine>,
    bar: impl Fn(&Figures) -> Option<Bar>,
) -> Option<Panel> {
    let groups = Data::cases(runs);
    let systems = Data::systems(runs);
    let values: Vec<Vec<Option<Bar>>> = groups
        .iter()
        .map(|case| {
            systems.iter().map(|system| Data::pick(runs, system, case).and_then(|run| bar(&run.figures))).collect()
        })
        .collect();
    values.iter().flatten().any(Option::is_some).then(|| {
        Panel::Bars(Bars {
            title: title.to_string(),
            y_desc: y_desc.to_string(),
            groups,
            colours: systems.iter().map(|system| palette.colour(system)).collect(),
            systems,
            bars: values,
            refs,
            counts: false,
        })
    })
}

/// A latency bar: solid to p50, lighter to p99.
fn latency_bar(latency: Option<Percentiles>) -> Option<Bar> {
    let latency = latency?;
    Some(Bar {
        value: latency.p50_ms,
        upper: Some(latency.p99_ms.max(latency.p50_ms)),
        label: format!("{} / {}", fmt_value(latency.p50_ms), fmt_value(latency.p99_ms)),
    })
}

fn plain_bar(value: Option<f64>) -> Option<Bar> {
    let value = value?;
    value.is_finite().then(|| Bar { value, upper: None, label: fmt_value(value) })
}

/// Marks a panel of [`counts_bar`]s.
fn counts(panel: Option<Panel>) -> Option<Panel> {
    panel.map(|panel| match panel {
        Panel::Bars(bars) => Panel::Bars(Bars { counts: true, ..bars }),
        lines => lines,
    })
}

/// A bar of two counts that should both be 0 (lost / doubled): their sum, labelled `a / b`.
fn counts_bar(a: Option<f64>, b: Option<f64>) -> Option<Bar> {
    if a.is_none() && b.is_none() {
        return None;
    }
    let (a, b) = (a.unwrap_or(0.0), b.unwrap_or(0.0));
    Some(Bar { value: a + b, upper: None, label: format!("{a} / {b}") })
}

fn pm_cpu(data: &Data, palette: &Palette, floor: Option<Floor>) -> Option<Chart> {
    let runs = data.of("pm");
    let refs = floor.map_or_else(Vec::new, |floor| {
        let us = floor.read_us + 2.0 * floor.write_us;
        vec![RefLine {
            y: us,
            label: format!("floor: 1 read + 2 writes per message, {} µs", fmt_value(us)),
            colour: FLOOR_COLOUR,
        }]
    });
    let mut any_broker = false;
    let panel = bars(palette, &runs, "", "server CPU-s per million messages (µs each)", refs, |figures| {
        let Figures::Pm(pm) = figures else { return None };
        let (nodes, total) = per_million(&pm.server, pm.sent, pm.server_cpu_secs_per_million_messages);
        let nodes = nodes?;
        Some(Bar { value: nodes, upper: total, label: fmt_value(total.unwrap_or(nodes)) })
    })?;
    if let Panel::Bars(bars) = &panel {
        any_broker = bars.bars.iter().flatten().flatten().any(|bar| bar.upper.is_some());
    }
    let panels = vec![panel];
    let mut keys = system_keys(palette, &used_systems(&panels));
    if any_broker {
        keys.push((Key::Swatch(light(FLOOR_COLOUR)), "lighter: the broker's CPU (Redis)".into()));
    }
    keys.extend(ref_keys(&panels));
    Some(Chart { file: "pm-cpu.svg", title: "Private messages: server CPU per message".into(), keys, panels })
}

fn idle(data: &Data, palette: &Palette) -> Option<Chart> {
    let runs = data.of("idle");
    let panels: Vec<Panel> = [
        bars(palette, &runs, "RSS per idle connection", "server RSS per connection (KiB)", Vec::new(), |figures| {
            let Figures::Idle(idle) = figures else { return None };
            plain_bar(idle.server_rss_per_connection_bytes.map(|bytes| bytes / 1024.0))
        }),
        bars(palette, &runs, "Connect rate", "authenticated connections opened per second", Vec::new(), |figures| {
            let Figures::Idle(idle) = figures else { return None };
            plain_bar(idle.connect_rate)
        }),
        bars(palette, &runs, "Handshake, TCP connect → synced", "latency (ms), p50 / p99", Vec::new(), |figures| {
            let Figures::Idle(idle) = figures else { return None };
            latency_bar(idle.handshake)
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if panels.is_empty() {
        return None;
    }
    let mut keys = system_keys(palette, &used_systems(&panels));
    if panels.len() == 3 {
        keys.push((Key::Swatch(light(FLOOR_COLOUR)), "lighter: p50 to p99".into()));
    }
    Some(Chart { file: "idle.svg", title: "Idle authenticated connections".into(), keys, panels })
}

fn storm(data: &Data, palette: &Palette) -> Option<Chart> {
    let runs = data.of("storm");
    let recovery = bars(
        palette,
        &runs,
        "Reconnect → every missed message held",
        "seconds, p50 / last client",
        Vec::new(),
        |figures| {
            let Figures::Storm(storm) = figures else { return None };
            let last = storm.all_recovered_secs;
            let p50 = storm.recovery.map(|latency| latency.p50_ms / 1000.0);
            let value = p50.or(last)?;
            Some(Bar {
                value,
                upper: last.map(|last| last.max(value)),
                label: format!("{} / {}", fmt_value(value), last.map_or("-".to_string(), fmt_value)),
            })
        },
    );
    let any_recovery = recovery.is_some();
    let panels: Vec<Panel> = [
        recovery,
        counts(bars(palette, &runs, "Lost / doubled messages", "messages (must be 0)", Vec::new(), |figures| {
            let Figures::Storm(storm) = figures else { return None };
            counts_bar(storm.lost, storm.doubled)
        })),
        bars(palette, &runs, "Server CPU per reconnect", "ms of CPU per reconnected client", Vec::new(), |figures| {
            let Figures::Storm(storm) = figures else { return None };
            plain_bar(storm.server_cpu_ms_per_reconnect)
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if panels.is_empty() {
        return None;
    }
    let mut keys = system_keys(palette, &used_systems(&panels));
    if any_recovery {
        keys.push((Key::Swatch(light(FLOOR_COLOUR)), "lighter: p50 to the last client".into()));
    }
    Some(Chart { file: "storm.svg", title: "Reconnect storm".into(), keys, panels })
}

fn presence(data: &Data, palette: &Palette, floor: Option<Floor>) -> Option<Chart> {
    let runs = data.of("presence");
    let refs = floor.map_or_else(Vec::new, |floor| {
        vec![RefLine {
            y: floor.write_us,
            label: format!("floor: 1 write per event, {} µs", fmt_value(floor.write_us)),
            colour: FLOOR_COLOUR,
        }]
    });
    let online =
        bars(palette, &runs, "Login → user_online at watchers", "latency (ms), p50 / p99", Vec::new(), |f| {
            let Figures::Presence(presence) = f else { return None };
            latency_bar(presence.online_latency)
        });
    let offline =
        bars(palette, &runs, "Close → user_offline at watchers", "latency (ms), p50 / p99", Vec::new(), |f| {
            let Figures::Presence(presence) = f else { return None };
            latency_bar(presence.offline_latency)
        });
    let any_latency = online.is_some() || offline.is_some();
    let panels: Vec<Panel> = [
        online,
        offline,
        counts(bars(palette, &runs, "Missed / extra events", "events per watcher (must be 0)", Vec::new(), |f| {
            let Figures::Presence(presence) = f else { return None };
            counts_bar(presence.missed, presence.extra)
        })),
        bars(palette, &runs, "Server CPU per event", "server CPU-s per million events (µs each)", refs, |f| {
            let Figures::Presence(presence) = f else { return None };
            let (nodes, total) =
                per_million(&presence.server, presence.events_in_window, presence.server_cpu_secs_per_million_events);
            plain_bar(total.or(nodes))
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    if panels.is_empty() {
        return None;
    }
    let mut keys = system_keys(palette, &used_systems(&panels));
    if any_latency {
        keys.push((Key::Swatch(light(FLOOR_COLOUR)), "lighter: p50 to p99".into()));
    }
    keys.extend(ref_keys(&panels));
    Some(Chart { file: "presence.svg", title: "Presence: users coming online and going offline".into(), keys, panels })
}

fn used_systems(panels: &[Panel]) -> Vec<&str> {
    let mut used: Vec<&str> = Vec::new();
    for panel in panels {
        match panel {
            Panel::Bars(bars) => {
                for (i, system) in bars.systems.iter().enumerate() {
                    if bars.bars.iter().any(|group| group[i].is_some()) && !used.contains(&system.as_str()) {
                        used.push(system);
                    }
                }
            }
            Panel::Lines(lines) => {
                for line in &lines.lines {
                    if !used.contains(&line.system.as_str()) {
                        used.push(&line.system);
                    }
                }
            }
        }
    }
    used
}

// ---------------------------------------------------------------------------------------------
// Drawing. Plotters divides font sizes by 1.24 for the SVG `font-size`; sizes below are plotters'.

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const TITLE_SIZE: f64 = 24.0;
const CAPTION_SIZE: f64 = 19.0;
const TEXT_SIZE: f64 = 17.0;
const TICK_SIZE: f64 = 16.0;
const VALUE_SIZE: f64 = 15.0;
const PANEL_HEIGHT: u32 = 400;
const LINE_PANEL_WIDTH: u32 = 560;

/// Roughly how wide a text is in pixels (the viewer lays it out; sans-serif averages ~0.55 em).
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size / 1.24 * 0.56
}

/// `(columns, rows)` of the panels.
fn grid(panels: usize) -> (usize, usize) {
    let columns = if panels == 4 { 2 } else { panels.min(3) };
    (columns, panels.div_ceil(columns))
}

fn panel_width(panel: &Panel) -> u32 {
    match panel {
        Panel::Lines(_) => LINE_PANEL_WIDTH,
        Panel::Bars(bars) => {
            let widest = |texts: &mut dyn Iterator<Item = f64>| texts.fold(0.0, f64::max);
            let label = widest(&mut bars.bars.iter().flatten().flatten().map(|bar| text_width(&bar.label, VALUE_SIZE)));
            let slot = (label + 10.0).max(46.0);
            let group_label = widest(&mut bars.groups.iter().map(|group| text_width(group, TICK_SIZE)));
            let group = (slot * bars.systems.len() as f64 / 0.8).max(group_label + 20.0);
            (110.0 + group * bars.groups.len() as f64).clamp(340.0, 1400.0) as u32
        }
    }
}

/// Lays the legend out in rows of `width` pixels: each key's x and row.
fn legend_layout(keys: &[(Key, String)], width: u32) -> Vec<(i32, i32)> {
    let (mut x, mut row) = (16.0, 0);
    keys.iter()
        .map(|(_, label)| {
            let w = 30.0 + text_width(label, TEXT_SIZE) + 26.0;
            if x + w > f64::from(width) && x > 16.0 {
                x = 16.0;
                row += 1;
            }
            let at = (x as i32, row);
            x += w;
            at
        })
        .collect()
}

/// The SVG text of a chart.
fn render(chart: &Chart) -> anyhow::Result<String> {
    let (columns, rows) = grid(chart.panels.len());
    let width = chart.panels.iter().map(panel_width).max().unwrap_or(LINE_PANEL_WIDTH) * columns as u32;
    let layout = legend_layout(&chart.keys, width);
    let legend_rows = layout.iter().map(|&(_, row)| row + 1).max().unwrap_or(0);
    let header = 44 + 26 * legend_rows as u32 + 6;
    let height = header + PANEL_HEIGHT * rows as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (head, body) = root.split_vertically(header);
        head.draw(&Text::new(chart.title.clone(), (16, 12), (FONT, TITLE_SIZE).into_font().style(FontStyle::Bold)))?;
        for ((key, label), &(x, row)) in chart.keys.iter().zip(&layout) {
            let y = 56 + 26 * row;
            match *key {
                Key::Swatch(colour) => head.draw(&Rectangle::new([(x, y - 7), (x + 22, y + 7)], colour.filled()))?,
                Key::Line(colour, dashed) => {
                    let style = colour.stroke_width(2);
                    if dashed {
                        for dash in [0, 9, 18] {
                            head.draw(&PathElement::new(vec![(x + dash, y), (x + dash + 5, y)], style))?;
                        }
                    } else {
                        head.draw(&PathElement::new(vec![(x, y), (x + 22, y)], style))?;
                    }
                }
                Key::Cross => head.draw(&Cross::new((x + 11, y), 6, FLOOR_COLOUR.stroke_width(2)))?,
            }
            let style = TextStyle::from((FONT, TEXT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            head.draw(&Text::new(label.clone(), (x + 30, y), style))?;
        }
        // Panels of lines show the same figure for different cases: one scale for all of them.
        let line_panels: Vec<&Lines> = chart
            .panels
            .iter()
            .filter_map(|panel| match panel {
                Panel::Lines(lines) => Some(lines),
                Panel::Bars(_) => None,
            })
            .collect();
        let bounds = Bounds::of(&line_panels);
        for (panel, area) in chart.panels.iter().zip(body.split_evenly((rows, columns))) {
            match panel {
                Panel::Bars(bars) => draw_bars(&area, bars)?,
                Panel::Lines(lines) => draw_lines(&area, lines, bounds)?,
            }
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw_bars(area: &Area, panel: &Bars) -> anyhow::Result<()> {
    let groups = panel.groups.len() as f64;
    let top = panel
        .bars
        .iter()
        .flatten()
        .flatten()
        .map(|bar| bar.upper.unwrap_or(bar.value).max(bar.value))
        .chain(panel.refs.iter().map(|line| line.y))
        .fold(0.0, f64::max);
    let top = match (top > 0.0, panel.counts) {
        (false, _) => 1.0,
        (true, false) => top * 1.15,
        (true, true) => (top * 1.15).ceil(),
    };
    // Counts get a tick per whole number, at most 11.
    let y_ticks = if panel.counts { (top as usize + 1).min(11) } else { 10 };
    let mut builder = ChartBuilder::on(area);
    builder.margin(12).margin_right(20).x_label_area_size(40).y_label_area_size(72);
    if !panel.title.is_empty() {
        builder.caption(&panel.title, (FONT, CAPTION_SIZE));
    }
    let mut chart = builder.build_cartesian_2d(GroupAxis(panel.groups.len()), 0.0..top)?;
    let names = panel.groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(BLACK.mix(0.1))
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| names.get(x.floor() as usize).cloned().unwrap_or_default())
        .y_labels(y_ticks)
        .y_label_formatter(&|y| fmt_tick(*y))
        .y_desc(&panel.y_desc)
        .axis_desc_style((FONT, TEXT_SIZE))
        .label_style((FONT, TICK_SIZE))
        .draw()?;
    // Bars side by side in the middle of their group, at most 0.3 of a group wide each.
    let slots = panel.systems.len() as f64;
    let width = (0.8 / slots).min(0.3);
    let first = 0.5 - width * slots / 2.0;
    for (g, group) in panel.bars.iter().enumerate() {
        for (s, bar) in group.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let left = g as f64 + first + s as f64 * width;
            let (x0, x1) = (left + width * 0.06, left + width * 0.94);
            let colour = panel.colours[s];
            if let Some(upper) = bar.upper.filter(|&upper| upper > bar.value) {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, bar.value), (x1, upper)],
                    light(colour).filled(),
                )))?;
            }
            chart.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x1, bar.value)], colour.filled())))?;
            let y = bar.upper.unwrap_or(bar.value).max(bar.value);
            let style = TextStyle::from((FONT, VALUE_SIZE).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(bar.label.clone(), ((x0 + x1) / 2.0, y), style)))?;
        }
    }
    for line in &panel.refs {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, line.y), (groups, line.y)],
            6,
            4,
            line.colour.stroke_width(2),
        ))?;
    }
    Ok(())
}

/// The x axis of grouped bars: group i spans [i, i + 1), its name is the tick at the centre.
struct GroupAxis(usize);

impl Ranged for GroupAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, (from, to): (i32, i32)) -> i32 {
        from + (value / self.0 as f64 * f64::from(to - from)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

/// The largest x and y, and the smallest positive y, over panels of lines (their reference lines
/// included).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    x_max: f64,
    y_min: f64,
    y_max: f64,
}

impl Bounds {
    fn of(panels: &[&Lines]) -> Self {
        let points = || panels.iter().flat_map(|panel| panel.lines.iter().flat_map(|line| line.points.iter()));
        let refs = || panels.iter().flat_map(|panel| panel.refs.iter().map(|line| line.y));
        Bounds {
            x_max: points().map(|&(x, _, _)| x).fold(0.0, f64::max),
            y_min: points().map(|&(_, y, _)| y).chain(refs()).filter(|&y| y > 0.0).fold(f64::INFINITY, f64::min),
            y_max: points().map(|&(_, y, _)| y).chain(refs()).fold(0.0, f64::max),
        }
    }
}

fn draw_lines(area: &Area, panel: &Lines, Bounds { x_max, y_min, y_max }: Bounds) -> anyhow::Result<()> {
    let x_max = if x_max > 0.0 { x_max * 1.1 } else { 1.0 };
    let mut builder = ChartBuilder::on(area);
    builder.margin(12).margin_right(24).x_label_area_size(48).y_label_area_size(72);
    builder.caption(&panel.title, (FONT, CAPTION_SIZE));
    if panel.log_y {
        let y_min = if y_min.is_finite() { y_min } else { 1.0 };
        let lo = 10f64.powf(y_min.log10().floor());
        let hi = 10f64.powf((y_max.max(lo) * 1.01).log10().ceil());
        let mut chart = builder.build_cartesian_2d(0.0..x_max, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| fmt_tick(*x))
            .y_label_formatter(&|y| fmt_tick(*y))
            .x_desc(&panel.x_desc)
            .y_desc(&panel.y_desc)
            .axis_desc_style((FONT, TEXT_SIZE))
            .label_style((FONT, TICK_SIZE))
            .draw()?;
        draw_line_series(&mut chart, panel, x_max)
    } else {
        let top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let mut chart = builder.build_cartesian_2d(0.0..x_max, 0.0..top)?;
        chart
            .configure_mesh()
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| fmt_tick(*x))
            .y_label_formatter(&|y| fmt_tick(*y))
            .x_desc(&panel.x_desc)
            .y_desc(&panel.y_desc)
            .axis_desc_style((FONT, TEXT_SIZE))
            .label_style((FONT, TICK_SIZE))
            .draw()?;
        draw_line_series(&mut chart, panel, x_max)
    }
}

fn draw_line_series<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Lines,
    x_max: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    for line in &panel.refs {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, line.y), (x_max, line.y)],
            6,
            4,
            line.colour.stroke_width(2),
        ))?;
    }
    for line in &panel.lines {
        let colour = line.colour;
        let xy: Vec<(f64, f64)> = line.points.iter().map(|&(x, y, _)| (x, y)).collect();
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(xy, 8, 5, colour.stroke_width(2)))?;
        } else {
            chart.draw_series(LineSeries::new(xy, colour.stroke_width(2)))?;
        }
        for &(x, y, kept_up) in &line.points {
            if kept_up {
                chart.draw_series(std::iter::once(Circle::new((x, y), 4, colour.filled())))?;
            } else {
                chart.draw_series(std::iter::once(Cross::new((x, y), 6, colour.stroke_width(2))))?;
            }
        }
    }
    Ok(())
}

/// A value for a label: three significant digits, thousands separated.
fn fmt_value(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1000.0 {
        let digits = format!("{:.0}", abs);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if value < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else if abs >= 1.0 {
        format!("{value:.2}")
    } else if abs == 0.0 {
        "0".to_string()
    } else {
        let decimals = (2.0 - abs.log10().floor()) as usize;
        format!("{value:.decimals$}")
    }
}

/// An axis tick: `20k`, `1.5M`, `0.25`, without trailing zeros.
fn fmt_tick(value: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{}M", trim(format!("{:.2}", value / 1e6)))
    } else if abs >= 1e4 {
        format!("{}k", trim(format!("{:.1}", value / 1e3)))
    } else if abs >= 1.0 || abs == 0.0 {
        trim(format!("{value:.2}"))
    } else {
        trim(format!("{value:.4}"))
    }
}

/// The number of runs per scenario, for tests and messages.
pub fn count_by_scenario(runs: &[Run]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for run in runs {
        *counts.entry(run.figures.scenario()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout(system: &str, case: &str, steps: &[(f64, f64, f64, bool)], broker: Option<f64>) -> String {
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

    fn pm(system: Option<&str>, rate: f64, cpu: f64, broker: Option<f64>) -> String {
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
    fn lines_are_parsed_by_scenario_and_the_rest_skipped() {
        let text = [
            fanout("ws", "fanout 1000 members, 1 node", &[(20.0, 19980.0, 1.44, true)], None),
            pm(None, 1000.0, 2.16, Some(0.2)),
            r#"{"scenario": "floor", "size": 100, "batch": 8, "write_us": 4.8, "read_us": 3.7, "batched_write_us_per_frame": 0.56}"#.into(),
            r#"{"scenario": "something-new", "x": 1}"#.into(),
            r#"{"no": "scenario"}"#.into(),
            String::new(),
            r#"{"scenario": "fanout", "steps": "#.into(),
            r#"{"scenario": "pm", "rate": "fast"}"#.into(),
        ]
        .join("\n");
        let (runs, skipped, bad) = parse_lines(&text, "switchboard");
        assert_eq!(count_by_scenario(&runs), BTreeMap::from([("fanout", 1), ("floor", 1), ("pm", 1)]));
        assert_eq!(skipped, 2);
        assert_eq!(bad.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [7, 8]);
        // The tag's case without the scenario's name; a case of the line's own sizes without one.
        assert_eq!((runs[0].system.as_str(), runs[0].case.as_str()), ("ws", "1000 members, 1 node"));
        assert_eq!((runs[1].system.as_str(), runs[1].case.as_str()), ("switchboard", "1000 pairs @ 1000/s, 2 nodes"));
        let Figures::Pm(pm) = &runs[1].figures else { panic!("not pm") };
        let (nodes, total) = per_million(&pm.server, pm.sent, None);
        assert_eq!((nodes.unwrap().round(), total.unwrap().round()), (270.0, 295.0));
        let floor = Data { runs: &runs }.floor(None).unwrap();
        assert_eq!((floor.write_us, floor.read_us, floor.batched), (4.8, 3.7, Some((8.0, 0.56))));
        let given = Data { runs: &runs }.floor(Some((6.0, 5.0))).unwrap();
        assert_eq!((given.write_us, given.read_us, given.batched), (6.0, 5.0, None));
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

    #[test]
    fn numbers_are_short() {
        assert_eq!(
            [fmt_value(269.97), fmt_value(7.632), fmt_value(13.45), fmt_value(2420.9)],
            ["270", "7.63", "13.4", "2,421"]
        );
        assert_eq!([fmt_value(0.0489), fmt_value(0.0), fmt_value(19980.0)], ["0.0489", "0", "19,980"]);
        assert_eq!(
            [fmt_tick(20000.0), fmt_tick(2.5), fmt_tick(0.0), fmt_tick(1.5e6), fmt_tick(100.0)],
            ["20k", "2.5", "0", "1.5M", "100"]
        );
    }
}
