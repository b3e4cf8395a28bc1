//! Drawing a chart as SVG with plotters: what a chart is made of (panels of grouped bars or of
//! lines, a legend), the layout, the axes and the numbers on them.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::panels::FLOOR_COLOUR;

/// The lighter shade of a colour.
pub(super) fn light(colour: RGBColor) -> RGBColor {
    let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * 0.6).round() as u8;
    RGBColor(mix(colour.0), mix(colour.1), mix(colour.2))
}

/// A horizontal reference line.
#[derive(Clone)]
pub(super) struct RefLine {
    pub(super) y: f64,
    pub(super) label: String,
    pub(super) colour: RGBColor,
}

/// One bar: solid up to `value`, lighter from there up to `upper`, `label` above it.
pub(super) struct Bar {
    pub(super) value: f64,
    pub(super) upper: Option<f64>,
    pub(super) label: String,
}

/// A panel of grouped bars: a group per case, a bar per system.
pub(super) struct Bars {
    pub(super) title: String,
    pub(super) y_desc: String,
    pub(super) groups: Vec<String>,
    pub(super) systems: Vec<String>,
    pub(super) colours: Vec<RGBColor>,
    /// `[group][system]`.
    pub(super) bars: Vec<Vec<Option<Bar>>>,
    pub(super) refs: Vec<RefLine>,
    /// Counts: whole-number ticks only.
    pub(super) counts: bool,
}

/// A line: a system's points `(x, y, kept up)`, solid or dashed.
pub(super) struct Line {
    pub(super) system: String,
    pub(super) colour: RGBColor,
    pub(super) dashed: bool,
    pub(super) points: Vec<(f64, f64, bool)>,
}

/// A panel of lines over a linear x axis.
pub(super) struct Lines {
    pub(super) title: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) log_y: bool,
    pub(super) lines: Vec<Line>,
    pub(super) refs: Vec<RefLine>,
}

pub(super) enum Panel {
    Bars(Bars),
    Lines(Lines),
}

/// An entry of a chart's legend.
pub(super) enum Key {
    Swatch(RGBColor),
    Line(RGBColor, bool),
    Cross,
}

/// One SVG file: a title, a legend, panels side by side (2 × 2 for four).
pub(super) struct Chart {
    pub(super) file: &'static str,
    pub(super) title: String,
    pub(super) keys: Vec<(Key, String)>,
    pub(super) panels: Vec<Panel>,
}

// Plotters divides font sizes by 1.24 for the SVG `font-size`; sizes below are plotters'.

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const FONT: &str = "sans-serif";
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
pub(super) fn render(chart: &Chart) -> anyhow::Result<String> {
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
        draw_line_series(&mut chart, panel, x_max)
    } else {
        let top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let mut chart = builder.build_cartesian_2d(0.0..x_max, 0.0..top)?;
        draw_line_series(&mut chart, panel, x_max)
    }
}

/// The panel's grid and axes, then its reference lines and series.
fn draw_line_series<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Lines,
    x_max: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
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
pub(super) fn fmt_value(value: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
