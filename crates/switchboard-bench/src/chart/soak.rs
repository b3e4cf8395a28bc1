//! `soak.svg`, from the `soak-sample` lines of `switchboard bench soak`.

use serde::Deserialize;

use super::panels::{KNOWN_SYSTEMS, OTHER_COLOURS};
use super::render::{Chart, Key, Line, Lines, Panel};

/// A `soak-sample` line of `switchboard bench soak`.
#[derive(Debug, Deserialize)]
pub(super) struct SoakSample {
    #[serde(rename = "scenario")]
    _scenario: SoakTag,
    nodes: u32,
    node: String,
    secs: f64,
    rss_kib: u64,
    open_files: u64,
}

#[derive(Debug, Deserialize)]
enum SoakTag {
    #[serde(rename = "soak-sample")]
    Sample,
}

/// `soak.svg`: each node's RSS and open files over a soak, a line per node of each run.
pub(super) fn chart(samples: &[SoakSample]) -> Option<Chart> {
    let mut series: Vec<(String, Vec<&SoakSample>)> = Vec::new();
    for sample in samples {
        let name =
            if sample.nodes == 1 { "1 node".to_owned() } else { format!("{} nodes: {}", sample.nodes, sample.node) };
        match series.iter_mut().find(|(known, _)| *known == name) {
            Some((_, points)) => points.push(sample),
            None => series.push((name, vec![sample])),
        }
    }
    if series.is_empty() {
        return None;
    }
    let colours = [KNOWN_SYSTEMS[0].2, OTHER_COLOURS[0], OTHER_COLOURS[1], OTHER_COLOURS[2], OTHER_COLOURS[3]];
    let panel = |title: &str, y_desc: &str, value: fn(&SoakSample) -> f64| {
        let lines = series
            .iter()
            .enumerate()
            .map(|(index, (name, points))| Line {
                system: name.clone(),
                colour: colours[index % colours.len()],
                dashed: false,
                points: points.iter().map(|sample| (sample.secs / 60.0, value(sample), true)).collect(),
            })
            .collect();
        Panel::Lines(Lines {
            title: title.into(),
            x_desc: "minutes".into(),
            y_desc: y_desc.into(),
            log_y: false,
            lines,
            refs: Vec::new(),
        })
    };
    let keys = series
        .iter()
        .enumerate()
        .map(|(index, (name, _))| (Key::Line(colours[index % colours.len()], false), name.clone()))
        .collect();
    Some(Chart {
        file: "soak.svg",
        title: "Soak: mixed load for an hour, every node sampled every 10 s".into(),
        keys,
        panels: vec![
            panel("Resident memory", "RSS (MiB)", |sample| sample.rss_kib as f64 / 1024.0),
            panel("Open files", "open file descriptors", |sample| sample.open_files as f64),
        ],
    })
}
