//! The status page: one server-rendered HTML document, inline CSS and
//! inline SVG charts, no script and no external asset, reloading itself
//! every 5 seconds. Every text from servers and watchers (target names,
//! labels, messages, keys) goes through [`escape`].

use std::fmt::Write;

use super::{ConditionRow, Report, TargetRow};

/// Most conditions listed on the page (the API lists them all).
pub(crate) const MAX_CONDITIONS_SHOWN: usize = 200;

/// `text` safe inside HTML text and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
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

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#eee}td.msg{max-width:40em;overflow-wrap:anywhere}\
.error,.down,.refused{color:#b00020;font-weight:bold}.warn{color:#a15c00;font-weight:bold}\
.info{color:#1a5fb4}.debug{color:#666}.up,.ok,.closed{color:#207020}.starting{color:#666}\
.open,.half-open{color:#b00020;font-weight:bold}.q{color:#b00020}\
#summary span{display:inline-block;margin-right:1.5em;font-size:1.1em}\
.charts{display:flex;gap:2em;flex-wrap:wrap}small{color:#666}";

/// Bar colours by level: debug, info, warn, error.
const COLOURS: [&str; 4] = ["#9a9a9a", "#1a5fb4", "#e5a50a", "#c01c28"];

/// The page of `report`.
pub(crate) fn render(report: &Report) -> String {
    let mut html = String::with_capacity(16 * 1024 + report.targets.len() * 400);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>Lookout status</title><style>{STYLE}</style></head><body>\
         <h1>Lookout {}</h1>",
        escape(report.version)
    );
    summary(&mut html, report);
    conditions(&mut html, &report.conditions);
    targets(&mut html, report);
    html.push_str("<div class=\"charts\">");
    events_chart(&mut html, report);
    lateness_chart(&mut html, &report.lateness_per_minute_ms);
    html.push_str("</div>");
    bus(&mut html, report);
    alertmanager(&mut html, report);
    html.push_str("</body></html>\n");
    html
}

fn summary(html: &mut String, r: &Report) {
    let s = &r.summary;
    let _ = write!(
        html,
        "<section id=\"summary\"><span>{} targets</span><span>{} watched</span>\
         <span class=\"{}\">{} down</span><span class=\"{}\">{} conditions</span>\
         <span class=\"{}\">{} quarantined</span>\
         <br><small>started {} · now {} · JSON at <a href=\"/api/v1/status\">/api/v1/status</a>\
         </small></section>",
        s.targets,
        s.watched,
        if s.down > 0 { "down" } else { "up" },
        s.down,
        if s.conditions > 0 { "warn" } else { "up" },
        s.conditions,
        if s.quarantined > 0 { "q" } else { "up" },
        s.quarantined,
        escape(&r.started_at),
        escape(&r.now),
    );
}

/// An age in seconds as `3d 4h`, `5m 2s`, `42s`.
fn age(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn conditions(html: &mut String, conditions: &[ConditionRow]) {
    let _ = write!(
        html,
        "<section id=\"conditions\"><h2>Active conditions ({})</h2>",
        conditions.len()
    );
    if conditions.is_empty() {
        html.push_str("<p>None.</p></section>");
        return;
    }
    html.push_str(
        "<table><thead><tr><th>Age</th><th>Level</th><th>Watcher/kind</th><th>Key</th>\
         <th>Target</th><th>Message</th></tr></thead><tbody>",
    );
    for c in conditions.iter().take(MAX_CONDITIONS_SHOWN) {
        let runbook = c.runbook_url.as_deref().map_or_else(String::new, |url| {
            format!(" <a href=\"{}\">runbook</a>", escape(url))
        });
        let _ = write!(
            html,
            "<tr><td title=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}/{}</td><td>{}</td>\
             <td title=\"{}\">{}</td><td class=\"msg\">{}{runbook}</td></tr>",
            escape(&c.started_at),
            age(c.age_s),
            c.level,
            c.level,
            escape(&c.watcher),
            escape(&c.kind),
            escape(&c.key),
            escape(&c.instance),
            escape(&c.target),
            escape(&c.message),
        );
    }
    html.push_str("</tbody></table>");
    if conditions.len() > MAX_CONDITIONS_SHOWN {
        let _ = write!(
            html,
            "<p><small>The {} newest shown; /api/v1/status lists all {}.</small></p>",
            MAX_CONDITIONS_SHOWN,
            conditions.len()
        );
    }
    html.push_str("</section>");
}

fn targets(html: &mut String, r: &Report) {
    let _ = write!(
        html,
        "<section id=\"targets\"><h2>Targets ({}; troubled first)</h2>",
        r.summary.targets
    );
    if r.targets.is_empty() {
        html.push_str("<p>None polled yet.</p></section>");
        return;
    }
    pager(html, r);
    html.push_str(
        "<table><thead><tr><th>Key</th><th>State</th><th>Last poll</th><th>Lateness</th>\
         <th>Labels</th><th>Watchers (restarts)</th></tr></thead><tbody>",
    );
    for t in &r.targets {
        target(html, t);
    }
    html.push_str("</tbody></table>");
    pager(html, r);
    html.push_str("</section>");
}

fn target(html: &mut String, t: &TargetRow) {
    let labels: Vec<String> = t
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    let watchers: Vec<String> = t
        .watchers
        .iter()
        .map(|w| {
            if w.quarantined {
                format!(
                    "<span class=\"q\">{} ({}, quarantined)</span>",
                    escape(&w.name),
                    w.restarts
                )
            } else {
                format!("{} ({})", escape(&w.name), w.restarts)
            }
        })
        .collect();
    let _ = write!(
        html,
        "<tr><td title=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{} ms</td>\
         <td>{}</td><td>{}</td></tr>",
        escape(&t.instance),
        escape(&t.key),
        t.state,
        t.state,
        t.last_poll
            .as_deref()
            .map_or_else(|| "never".to_owned(), escape),
        t.lateness_ms,
        labels.join(" "),
        watchers.join(", "),
    );
}

/// Links to the other pages of targets, when there are several.
fn pager(html: &mut String, r: &Report) {
    if r.pages <= 1 {
        return;
    }
    let per = if r.per_page == super::PER_PAGE {
        String::new()
    } else {
        format!("&amp;per_page={}", r.per_page)
    };
    html.push_str("<p class=\"pages\">Page ");
    let shown = |n: usize, html: &mut String| {
        if n == r.page {
            let _ = write!(html, "<b>{n}</b> ");
        } else {
            let _ = write!(html, "<a href=\"?page={n}{per}\">{n}</a> ");
        }
    };
    // The first, the last, and those near the current one.
    let mut gap = false;
    for n in 1..=r.pages {
        if n == 1 || n == r.pages || n.abs_diff(r.page) <= 3 {
            shown(n, html);
            gap = false;
        } else if !gap {
            html.push_str("… ");
            gap = true;
        }
    }
    let _ = write!(html, "of {}</p>", r.pages);
}

/// Chart geometry: bar width, plot height, left margin for the scale.
const BAR: usize = 8;
const HEIGHT: usize = 120;
const LEFT: usize = 40;

fn chart_open(html: &mut String, id: &str, title: &str, max: u64, unit: &str) {
    let width = LEFT + BAR * 60 + 10;
    let _ = write!(
        html,
        "<section id=\"{id}\"><h2>{title}</h2>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" \
         role=\"img\" aria-label=\"{title}\">\
         <rect x=\"{LEFT}\" y=\"0\" width=\"{}\" height=\"{HEIGHT}\" fill=\"#fff\" stroke=\"#ccc\"/>\
         <text x=\"{}\" y=\"10\" font-size=\"10\" text-anchor=\"end\">{max}{unit}</text>\
         <text x=\"{}\" y=\"{HEIGHT}\" font-size=\"10\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{}\" font-size=\"10\">-60 min</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">now</text>",
        HEIGHT + 14,
        BAR * 60,
        LEFT - 4,
        LEFT - 4,
        HEIGHT + 12,
        LEFT + BAR * 60,
        HEIGHT + 12,
    );
}

/// The height in pixels of `value` on a scale to `max`.
fn scaled(value: u64, max: u64) -> usize {
    if max == 0 {
        return 0;
    }
    let h = u128::from(value) * HEIGHT as u128 / u128::from(max);
    usize::try_from(h).unwrap_or(HEIGHT).min(HEIGHT)
}

fn events_chart(html: &mut String, r: &Report) {
    let e = &r.events_per_minute;
    let levels = [&e.debug, &e.info, &e.warn, &e.error];
    let totals: Vec<u64> = (0..e.debug.len())
        .map(|i| levels.iter().map(|l| l.get(i).copied().unwrap_or(0)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    chart_open(html, "events-chart", "Events per minute", max, "");
    for (i, _) in totals.iter().enumerate() {
        // Stacked: debug at the bottom, error on top.
        let mut below = 0u64;
        for (level, counts) in levels.iter().enumerate() {
            let n = counts.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let (y0, y1) = (scaled(below, max), scaled(below + n, max));
            below += n;
            let _ = write!(
                html,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{n} {}</title></rect>",
                LEFT + i * BAR,
                HEIGHT - y1,
                BAR - 1,
                (y1 - y0).max(1),
                COLOURS[level],
                ["debug", "info", "warn", "error"][level],
            );
        }
    }
    html.push_str("</svg><br><small>");
    for (level, name) in ["debug", "info", "warn", "error"].iter().enumerate() {
        let _ = write!(
            html,
            "<span style=\"color:{}\">■</span> {name} ",
            COLOURS[level]
        );
    }
    html.push_str("</small></section>");
}

fn lateness_chart(html: &mut String, lateness: &[u64]) {
    let max = lateness.iter().copied().max().unwrap_or(0);
    chart_open(
        html,
        "lateness-chart",
        "Worst poll lateness per minute",
        max,
        " ms",
    );
    for (i, &ms) in lateness.iter().enumerate() {
        if ms == 0 {
            continue;
        }
        let h = scaled(ms, max).max(1);
        let _ = write!(
            html,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"#613583\"><title>{ms} ms</title></rect>",
            LEFT + i * BAR,
            HEIGHT - h,
            BAR - 1,
        );
    }
    html.push_str("</svg></section>");
}

fn bus(html: &mut String, r: &Report) {
    let b = &r.bus;
    let _ = write!(
        html,
        "<section id=\"bus\"><h2>Bus</h2><table><tr><th>Instance</th><th>Breaker</th>\
         <th>Outbox</th><th>Spool</th><th>Dropped</th></tr><tr><td>{}</td>\
         <td class=\"{}\">{}</td><td>{} / {}</td><td>{} bytes</td><td>{}</td></tr></table></section>",
        escape(&b.instance),
        b.breaker,
        b.breaker,
        b.outbox,
        b.outbox_max,
        b.spool_bytes,
        b.dropped,
    );
}

fn alertmanager(html: &mut String, r: &Report) {
    html.push_str("<section id=\"alertmanager\"><h2>Alertmanager</h2>");
    if r.alertmanager.is_empty() {
        html.push_str("<p>Not configured (<code>[alertmanager] urls</code>).</p></section>");
        return;
    }
    html.push_str(
        "<table><tr><th>URL</th><th>State</th><th>Last sent</th>\
         <th>Resolutions pending</th></tr>",
    );
    for a in &r.alertmanager {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.url),
            a.state,
            a.state,
            a.last_sent
                .as_deref()
                .map_or_else(|| "never".to_owned(), escape),
            a.pending_resolutions,
        );
    }
    html.push_str("</table></section>");
}
