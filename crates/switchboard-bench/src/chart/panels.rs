//! What the charts show: the runs picked by scenario, system and case, this machine's floor, the
//! systems' colours, and each chart's panels and legend.

use plotters::style::RGBColor;

use super::parse::{Figures, Percentiles, Run, Server, StepLine};
use super::render::{fmt_value, light, Bar, Bars, Chart, Key, Line, Lines, Panel, RefLine};

/// The runs, ordered and looked up by system and case.
pub(super) struct Data<'a> {
    pub(super) runs: &'a [Run],
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
    pub(super) fn floor(&self, given: Option<(f64, f64)>) -> Option<Floor> {
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
pub(super) struct Floor {
    pub(super) write_us: f64,
    pub(super) read_us: f64,
    pub(super) batched: Option<(f64, f64)>,
}

/// CPU seconds per million units: the nodes', and the nodes' and broker's together (`None` without
/// a broker).
pub(super) fn per_million(
    server: &Server,
    units: Option<f64>,
    nodes_reported: Option<f64>,
) -> (Option<f64>, Option<f64>) {
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
pub(super) const KNOWN_SYSTEMS: [(&str, &str, RGBColor); 3] = [
    ("switchboard", "Switchboard", RGBColor(37, 99, 235)),
    ("ws", "ws peer", RGBColor(234, 88, 12)),
    ("socketio", "Socket.IO peer", RGBColor(22, 163, 74)),
];
pub(super) const OTHER_COLOURS: [RGBColor; 4] =
    [RGBColor(147, 51, 234), RGBColor(219, 39, 119), RGBColor(8, 145, 178), RGBColor(120, 113, 108)];
pub(super) const FLOOR_COLOUR: RGBColor = RGBColor(64, 64, 64);
const BATCHED_FLOOR_COLOUR: RGBColor = RGBColor(150, 150, 150);

/// A system's name and colour in the charts.
pub(super) struct Palette {
    systems: Vec<(String, String, RGBColor)>,
}

impl Palette {
    pub(super) fn new(runs: &[Run]) -> Self {
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

pub(super) fn fanout_cpu(data: &Data, palette: &Palette, floor: Option<Floor>) -> Option<Chart> {
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

pub(super) fn fanout_latency(data: &Data, palette: &Palette) -> Option<Chart> {
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

pub(super) fn pm_cpu(data: &Data, palette: &Palette, floor: Option<Floor>) -> Option<Chart> {
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

pub(super) fn idle(data: &Data, palette: &Palette) -> Option<Chart> {
    let runs = data.of("idle");
    let panels = [
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
    ];
    let lighter = panels[2].is_some().then_some("lighter: p50 to p99");
    bar_chart("idle.svg", "Idle authenticated connections", palette, panels, lighter)
}

pub(super) fn storm(data: &Data, palette: &Palette) -> Option<Chart> {
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
    let lighter = recovery.is_some().then_some("lighter: p50 to the last client");
    let panels = [
        recovery,
        counts(bars(palette, &runs, "Lost / doubled messages", "messages (must be 0)", Vec::new(), |figures| {
            let Figures::Storm(storm) = figures else { return None };
            counts_bar(storm.lost, storm.doubled)
        })),
        bars(palette, &runs, "Server CPU per reconnect", "ms of CPU per reconnected client", Vec::new(), |figures| {
            let Figures::Storm(storm) = figures else { return None };
            plain_bar(storm.server_cpu_ms_per_reconnect)
        }),
    ];
    bar_chart("storm.svg", "Reconnect storm", palette, panels, lighter)
}

pub(super) fn presence(data: &Data, palette: &Palette, floor: Option<Floor>) -> Option<Chart> {
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
    let lighter = (online.is_some() || offline.is_some()).then_some("lighter: p50 to p99");
    let panels = [
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
    ];
    let mut chart =
        bar_chart("presence.svg", "Presence: users coming online and going offline", palette, panels, lighter)?;
    let refs = ref_keys(&chart.panels);
    chart.keys.extend(refs);
    Some(chart)
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

/// A chart of the panels that have data, keyed by the systems they show; `lighter` explains the
/// lighter part of the bars, when a panel has one.
fn bar_chart<const N: usize>(
    file: &'static str,
    title: &str,
    palette: &Palette,
    panels: [Option<Panel>; N],
    lighter: Option<&str>,
) -> Option<Chart> {
    let panels: Vec<Panel> = panels.into_iter().flatten().collect();
    if panels.is_empty() {
        return None;
    }
    let mut keys = system_keys(palette, &used_systems(&panels));
    if let Some(lighter) = lighter {
        keys.push((Key::Swatch(light(FLOOR_COLOUR)), lighter.into()));
    }
    Some(Chart { file, title: title.into(), keys, panels })
}
