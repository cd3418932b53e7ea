//! Workflow diagrams as SVG: a definition's steps and the ways between them, laid out by
//! `layout-rs` (a layered layout, as Graphviz's dot), drawn here with the app's own look. Given
//! an instance's history, the steps it took, the ones it waits in and the ones that failed are
//! marked, and so are the ways it went.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use crate::definition::{Definition, Step};
use crate::engine::{Event, EventKind, Instance, Wait};

/// Where an instance is in its workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Steps it went through.
    pub done: BTreeSet<String>,
    /// Steps it waits in now.
    pub current: BTreeSet<String>,
    /// Steps stopped by an incident.
    pub failed: BTreeSet<String>,
    /// Ways it went, `(from, to)`.
    pub taken: BTreeSet<(String, String)>,
}

impl Progress {
    /// Read from an instance and its history.
    pub fn of(instance: &Instance, history: &[Event]) -> Progress {
        let mut progress = Progress::default();
        // The step each token left last, to know which way it went next.
        let mut left: HashMap<u64, String> = HashMap::new();
        let mut last_left: Option<String> = None;
        for event in history {
            match &event.kind {
                EventKind::StepEntered { step, token, .. } => {
                    let from = left.get(token).cloned().or_else(|| last_left.clone());
                    if let Some(from) = from {
                        progress.taken.insert((from, step.clone()));
                    }
                    progress.done.insert(step.clone());
                }
                EventKind::StepCompleted { step, token, .. } => {
                    left.insert(*token, step.clone());
                    last_left = Some(step.clone());
                }
                _ => {}
            }
        }
        for token in instance.tokens.values() {
            progress.done.remove(&token.step);
            if matches!(token.wait, Wait::Incident(_)) {
                progress.failed.insert(token.step.clone());
            } else {
                progress.current.insert(token.step.clone());
            }
        }
        progress
    }
}

/// Why a diagram could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the diagram of `{workflow}` could not be laid out")]
pub struct DiagramError {
    pub workflow: String,
}

/// The definition as an SVG document, marked with `progress` if given.
pub fn svg(def: &Definition, progress: Option<&Progress>) -> Result<String, DiagramError> {
    // The layout library is not ours: a definition it cannot lay out must fail this diagram,
    // never the request's task.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| draw(def, progress))).map_err(|_| {
        tracing::warn!(workflow = %def.id, "diagram.layout_failed");
        DiagramError {
            workflow: def.id.clone(),
        }
    })
}

const FONT_SIZE: usize = 14;

fn draw(def: &Definition, progress: Option<&Progress>) -> String {
    let mut graph = VisualGraph::new(Orientation::TopToBottom);
    let look = StyleAttr::new(Color::fast("black"), 1, None, 8, FONT_SIZE);
    let mut handles = BTreeMap::new();
    for step in &def.steps {
        let state = progress.map_or("", |p| state_of(p, step.id()));
        let label = format!("{}\n{}", step.title(), kind_label(step));
        let shape = ShapeKind::new_box(&label);
        let size = layout::std_shapes::render::get_shape_size(
            Orientation::TopToBottom,
            &shape,
            FONT_SIZE,
            false,
        );
        let start = if step.id() == def.start { " start" } else { "" };
        let class = format!("step {}{start} {state}", step.kind());
        let element = Element::create_with_properties(
            shape,
            look.clone(),
            Orientation::TopToBottom,
            size,
            class.trim_end().to_string(),
        );
        handles.insert(step.id().to_string(), graph.add_node(element));
    }
    for step in &def.steps {
        let Some(&from) = handles.get(step.id()) else {
            continue;
        };
        for (field, target) in step.targets() {
            // A parallel step's `join` names where its branches meet; they reach it themselves.
            if field == "join" {
                continue;
            }
            let Some(&to) = handles.get(target) else {
                continue;
            };
            let label = field.strip_prefix("on.").unwrap_or("");
            let taken = progress.is_some_and(|p| {
                p.taken
                    .contains(&(step.id().to_string(), target.to_string()))
            });
            let mut arrow = Arrow::simple(label);
            arrow.look = look.clone();
            arrow.end = LineEndKind::Arrow;
            arrow.properties = Some(if taken { "edge taken" } else { "edge" }.to_string());
            graph.add_edge(arrow, from, to);
        }
    }
    let mut canvas = Canvas::default();
    graph.do_it(false, false, false, &mut canvas);
    canvas.finish(&def.id)
}

fn state_of<'a>(p: &Progress, step: &str) -> &'a str {
    if p.failed.contains(step) {
        "failed"
    } else if p.current.contains(step) {
        "current"
    } else if p.done.contains(step) {
        "done"
    } else {
        ""
    }
}

/// What the second line of a step's box says.
fn kind_label(step: &Step) -> String {
    match step {
        Step::Task(t) => match (&t.role, &t.assignee, &t.assignee_from) {
            (Some(role), _, _) => format!("task · {role}"),
            (_, Some(person), _) => format!("task · {person}"),
            (_, _, Some(field)) => format!("task · from {field}"),
            _ => "task".to_string(),
        },
        Step::Approval(a) => match &a.policy {
            Some(policy) => format!("approval · {policy}"),
            None => "approval".to_string(),
        },
        Step::Action(a) => format!("action · {}", a.plugin),
        Step::Route(r) => format!("route · {}", r.plugin),
        Step::Join(j) => format!("join · {:?}", j.mode).to_lowercase(),
        Step::Receive(r) => format!("message · {}", r.message),
        other => other.kind().to_string(),
    }
}

/// Draws what the layout placed, as SVG with classes the embedded style colours.
#[derive(Debug, Default)]
struct Canvas {
    body: String,
    width: f64,
    height: f64,
}

impl Canvas {
    fn grow(&mut self, at: Point, size: Point) {
        self.width = self.width.max(at.x + size.x + 8.0);
        self.height = self.height.max(at.y + size.y + 8.0);
    }

    fn finish(self, workflow: &str) -> String {
        let mut out = String::with_capacity(self.body.len() + 1024);
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" role="img" aria-label="Diagram of workflow {name}">"#,
            w = self.width,
            h = self.height,
            name = escape(workflow),
        );
        out.push_str(STYLE);
        out.push_str(&self.body);
        out.push_str("</svg>");
        out
    }
}

const STYLE: &str = r##"<defs><marker id="arrowhead" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto" markerUnits="userSpaceOnUse"><path d="M0,0 L10,4 L0,8 z" fill="context-stroke"/></marker></defs><style>
text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;fill:#1f2937}
text .title{font-size:14px;font-weight:600}
text .kind{font-size:12px;fill:#6b7280}
.edge-label{font-size:12px;fill:#4b5563}
.step rect{fill:#ffffff;stroke:#cbd5e1;stroke-width:1.5}
.step.end rect{fill:#f8fafc}
.step.start rect{stroke:#64748b}
.step.done rect{fill:#ecfdf5;stroke:#10b981}
.step.current rect{fill:#eff6ff;stroke:#2563eb;stroke-width:3}
.step.failed rect{fill:#fef2f2;stroke:#dc2626;stroke-width:3}
.edge path{fill:none;stroke:#94a3b8;stroke-width:1.5}
.edge.taken path{stroke:#10b981;stroke-width:2.5}
</style>"##;

impl RenderBackend for Canvas {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        self.grow(xy, size);
        let class = properties.unwrap_or_default();
        let _ = write!(
            self.body,
            r#"<g class="{}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="{}"/></g>"#,
            escape(&class),
            xy.x,
            xy.y,
            size.x,
            size.y,
            look.rounded,
        );
    }

    fn draw_line(
        &mut self,
        start: Point,
        stop: Point,
        _look: &StyleAttr,
        properties: Option<String>,
    ) {
        self.grow(start, Point::zero());
        self.grow(stop, Point::zero());
        let _ = write!(
            self.body,
            r#"<g class="{}"><path d="M {:.1} {:.1} L {:.1} {:.1}"/></g>"#,
            escape(&properties.unwrap_or_else(|| "edge".to_string())),
            start.x,
            start.y,
            stop.x,
            stop.y,
        );
    }

    fn draw_circle(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
    ) {
        self.grow(xy, size);
        let _ = write!(
            self.body,
            r#"<g class="{}"><ellipse cx="{:.1}" cy="{:.1}" rx="{:.1}" ry="{:.1}"/></g>"#,
            escape(&properties.unwrap_or_default()),
            xy.x,
            xy.y,
            size.x / 2.0,
            size.y / 2.0,
        );
    }

    fn draw_text(&mut self, xy: Point, text: &str, _look: &StyleAttr) {
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return;
        }
        // Lines 18 px apart, centred on the point.
        let top = xy.y - 9.0 * (lines.len() as f64 - 1.0);
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" dominant-baseline="middle">"#,
            xy.x, top
        );
        for (i, line) in lines.iter().enumerate() {
            let class = if lines.len() == 1 {
                "edge-label"
            } else if i == 0 {
                "title"
            } else {
                "kind"
            };
            let dy = if i == 0 { 0.0 } else { 18.0 };
            let _ = write!(
                self.body,
                r#"<tspan x="{:.1}" dy="{dy}" class="{class}">{}</tspan>"#,
                xy.x,
                escape(line)
            );
        }
        self.body.push_str("</text>");
    }

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        dashed: bool,
        head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        text: &str,
    ) {
        if path.len() < 2 {
            return;
        }
        for (point, control) in path {
            self.grow(*point, Point::zero());
            self.grow(*control, Point::zero());
        }
        // The first pair is the exit from the first point, the others the entries into the
        // following points: `M p0 C c0, p1', p1 S ...`, as layout-rs's own SVG writer draws it.
        let mut d = format!(
            "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            path[0].0.x,
            path[0].0.y,
            path[0].1.x,
            path[0].1.y,
            path[1].0.x,
            path[1].0.y,
            path[1].1.x,
            path[1].1.y
        );
        for (point, control) in &path[2..] {
            let _ = write!(
                d,
                " S {:.1} {:.1}, {:.1} {:.1}",
                point.x, point.y, control.x, control.y
            );
        }
        let marker = if head.1 {
            r#" marker-end="url(#arrowhead)""#
        } else {
            ""
        };
        let dash = if dashed {
            r#" stroke-dasharray="5,5""#
        } else {
            ""
        };
        let _ = write!(
            self.body,
            r#"<g class="{}"><path d="{d}"{marker}{dash}/></g>"#,
            escape(&properties.unwrap_or_else(|| "edge".to_string())),
        );
        // Labels are drawn as their own nodes by the layout (it splits labelled edges).
        let _ = text;
    }

    fn create_clip(&mut self, _xy: Point, _size: Point, _rounded_px: usize) -> ClipHandle {
        0
    }
}

/// Text and attribute values, escaped for XML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
