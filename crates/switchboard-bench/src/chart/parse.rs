//! The input lines: each scenario's JSON report, parsed into a [`Run`] with the figures the charts
//! use.

use std::collections::BTreeMap;

use serde::Deserialize;

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
    pub(super) fn scenario(&self) -> &'static str {
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
    use crate::chart::panels::{per_million, Data};
    use crate::chart::tests::{fanout, pm};

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
}
