//! The failover as a picture (SVG, `plotters`): the client's answers over time, one row and one
//! colour per node, with the kill and the first gratuitous ARP (or route change) marked.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::error::LabError;
use crate::probe::{micros_to_ms, ProbeLog};

/// One panel of the picture: a scenario's probe log and the instants to mark.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The panel's title (`l2: node2 killed`).
    pub title: String,
    /// The probe's record.
    pub log: ProbeLog,
    /// Vertical marks: (label, microseconds on the probe's clock).
    pub marks: Vec<(String, u64)>,
    /// Every node, in row order (so rows exist even for nodes that never answered).
    pub nodes: Vec<String>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];
const MARK_COLOURS: [RGBColor; 3] = [
    RGBColor(214, 39, 40),
    RGBColor(0, 0, 0),
    RGBColor(23, 190, 207),
];
const PANEL_HEIGHT_PX: u32 = 320;
const WIDTH_PX: u32 = 960;

/// Draws `panels`, stacked, into an SVG file at `path`.
pub fn draw(path: &Path, panels: &[Panel]) -> Result<(), LabError> {
    let height = PANEL_HEIGHT_PX * u32::try_from(panels.len().max(1)).unwrap_or(1);
    let root = SVGBackend::new(path, (WIDTH_PX, height)).into_drawing_area();
    let error = |detail: String| LabError::Parse {
        what: format!("plot {}", path.display()),
        detail,
    };
    root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel).map_err(error)?;
    }
    root.present().map_err(|e| error(e.to_string()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), String> {
    let answers: Vec<(f64, String)> = panel
        .log
        .samples
        .iter()
        .filter_map(|sample| {
            sample.answer.as_ref().map(|answer| {
                (
                    micros_to_ms(answer.received_us) / 1000.0,
                    answer.node.clone(),
                )
            })
        })
        .collect();
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    for node in &panel.nodes {
        let next = rows.len();
        rows.entry(node.clone()).or_insert(next);
    }
    for (_, node) in &answers {
        let next = rows.len();
        rows.entry(node.clone()).or_insert(next);
    }
    let end_s = answers
        .iter()
        .map(|(at, _)| *at)
        .chain(panel.marks.iter().map(|(_, at)| micros_to_ms(*at) / 1000.0))
        .fold(1.0_f64, f64::max)
        * 1.02;
    let rows_count = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end_s, -0.5..(rows_count as f64 - 0.5))
        .map_err(|e| e.to_string())?;
    let names: BTreeMap<usize, String> = rows.iter().map(|(n, i)| (*i, n.clone())).collect();
    chart
        .configure_mesh()
        .x_desc("seconds since the probe started (client clock)")
        .y_labels(rows_count)
        .y_label_formatter(&|y| {
            let index = y.round();
            if (y - index).abs() < 0.01 && index >= 0.0 {
                names.get(&(index as usize)).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for (node, row) in &rows {
        let colour = PALETTE[row % PALETTE.len()];
        let points: Vec<(f64, f64)> = answers
            .iter()
            .filter(|(_, answered)| answered == node)
            .map(|(at, _)| (*at, *row as f64))
            .collect();
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 2, colour.filled())),
            )
            .map_err(|e| e.to_string())?
            .label(format!("answered by {node}"))
            .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
    }
    for (index, (label, at_us)) in panel.marks.iter().enumerate() {
        let at = micros_to_ms(*at_us) / 1000.0;
        let colour = MARK_COLOURS[index % MARK_COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                [(at, -0.5), (at, rows_count as f64 - 0.5)],
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
