//! The tables of `make bench-fleet`: each row the median of its runs,
//! the anchors measured in the same run, the targets with each
//! run and whether they held, and every run.

use crate::measure::{Bin, held, median};
use crate::{INTERVAL_S, Run};

/// The anchors measured in the same run: the seed's Bash tick and
/// redis_exporter, each per target-poll (scrape) and as a share of a core
/// for one target and for `max`, every 5 s.
pub struct Anchors {
    pub tick_ms: f64,
    /// redis_exporter's CPU and Redis time per scrape, in microseconds.
    pub exporter: Option<(f64, f64)>,
}

/// The runs of one row (one target count, one binary).
pub struct Measured {
    pub bin: Bin,
    pub runs: Vec<Run>,
}

impl Measured {
    fn median(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }

    fn each(&self, f: impl Fn(&Run) -> String) -> String {
        self.runs.iter().map(f).collect::<Vec<_>>().join(", ")
    }

    fn name(&self, several: bool) -> String {
        let targets = thousands(self.runs[0].targets);
        if several {
            format!("{targets} ({})", self.bin.label)
        } else {
            targets
        }
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn print_table(rows: &[Measured], anchors: &Anchors, several: bool) {
    println!(
        "| targets | servers | % of one core | CPU per target-poll | on the watched Redis per \
         target-poll | RSS MiB (peak) | KiB per target | lateness p50 / p99 (max) ms | envelopes/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in rows {
        let rss = m.median(|r| r.rss_kib as f64);
        // Per target: the growth over the one-target process of the same
        // binary when it was measured, else the whole RSS over the targets.
        let targets = m.runs[0].targets;
        let one = rows
            .iter()
            .find(|o| o.runs[0].targets == 1 && o.bin.label == m.bin.label)
            .map(|o| o.median(|r| r.rss_kib as f64));
        let per_target = match one {
            Some(base) if targets > 1 => (rss - base).max(0.0) / (targets - 1) as f64,
            _ => rss / targets as f64,
        };
        let late = if m.runs.iter().all(|r| r.lateness.is_some()) {
            let at = |i: usize| {
                m.median(|r| {
                    [
                        r.lateness.unwrap().0,
                        r.lateness.unwrap().1,
                        r.lateness.unwrap().2,
                    ][i]
                })
            };
            format!("{:.1} / {:.1} ({:.0})", at(0), at(1), at(2))
        } else {
            "n/a".to_owned()
        };
        println!(
            "| {} | {} | {:.2}% | {:.1} us | {:.1} us | {:.1} ({:.1}) | {per_target:.1} | {late} | {:.1} |",
            m.name(several),
            m.runs[0].servers,
            m.median(|r| r.core_pct),
            m.median(|r| r.us_per_poll),
            m.median(|r| r.redis_us_per_poll),
            rss / 1024.0,
            m.median(|r| r.hwm_kib as f64) / 1024.0,
            m.median(|r| r.envelopes_per_s),
        );
    }
    let max = rows.iter().map(|m| m.runs[0].targets).max().unwrap_or(1);
    let core = |us: f64, n: usize| us * n as f64 / (INTERVAL_S * 1e6) * 100.0;
    for n in [1, max] {
        let tick_us = anchors.tick_ms * 1e3;
        println!(
            "| seed Bash tick x {} (anchor, same run) | | {:.1}% | {tick_us:.0} us | | | | | |",
            thousands(n),
            core(tick_us, n),
        );
    }
    match anchors.exporter {
        Some((cpu_us, redis_us)) => {
            for n in [1, max] {
                println!(
                    "| redis_exporter x {}, one scrape each per 5 s (anchor, same run) | | {:.1}% \
                     | {cpu_us:.0} us | {redis_us:.1} us | | | | |",
                    thousands(n),
                    core(cpu_us, n),
                );
            }
        }
        None => println!(
            "| redis_exporter (anchor) | not installed: make redis-exporter | | | | | | | |"
        ),
    }
    println!();
}

/// The targets of issue-sized rows, each with its runs and whether it held.
pub fn print_targets(rows: &[Measured], several: bool) {
    println!("| row | target | each run | median | held |");
    println!("|---|---|---|---|---|");
    for m in rows {
        let name = m.name(several);
        let runs = m.runs.len();
        let cpu = |limit: f64| {
            let us = m.median(|r| r.us_per_poll);
            println!(
                "| {name} targets: CPU per target-poll | <= {limit:.0} us | {} | {us:.1} us | {} |",
                m.each(|r| format!("{:.1}", r.us_per_poll)),
                held(us <= limit),
            );
        };
        match m.runs[0].targets {
            1000 => cpu(100.0),
            10000 => {
                cpu(50.0);
                let gb = m.median(|r| r.rss_kib as f64) * 1024.0 / 1e9;
                println!(
                    "| {name} targets: RSS | <= 1.5 GB | {} | {gb:.2} GB | {} |",
                    m.each(|r| format!("{:.2}", r.rss_kib as f64 * 1024.0 / 1e9)),
                    held(gb <= 1.5),
                );
                let within = m
                    .runs
                    .iter()
                    .filter(|r| r.lateness.is_some_and(|l| l.1 <= 250.0))
                    .count();
                println!(
                    "| {name} targets: p99 lateness | <= 250 ms in {runs} of {runs} runs | {} ms | \
                     {within} of {runs} within | {} |",
                    m.each(|r| r
                        .lateness
                        .map_or("n/a".to_owned(), |l| format!("{:.0}", l.1))),
                    held(within == runs),
                );
            }
            _ => {}
        }
    }
    println!();
}

/// Every run: what the medians come from.
pub fn print_runs(rows: &[Measured], several: bool) {
    println!(
        "| targets | target-polls in window | CPU per target-poll, schedstat / clock ticks \
         | on Redis (by command) | p99 lateness | start-up to every target polled | mappings | threads \
         (exited mid-window) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in rows {
        for r in &m.runs {
            println!(
                "| {} | {} | {:.1} / {:.1} us | {:.1} us ({}) | {} | {:.1} s | {} | {} ({}) |",
                m.name(several),
                r.polls,
                r.us_per_poll,
                r.tick_us_per_poll,
                r.redis_us_per_poll,
                r.redis_by_command,
                r.lateness
                    .map_or("n/a".to_owned(), |l| format!("{:.0} ms", l.1)),
                r.startup_s,
                r.mappings,
                r.threads,
                r.threads_gone,
            );
        }
    }
}
