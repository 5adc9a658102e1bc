//! `make bench` with several `lookout` binaries (`LOOKOUT_BINS`, see
//! `measure.rs`), such as builds with and without the `mimalloc` feature:
//! each measured the same way in one run, three runs each, interleaved
//! (one of each binary in turn, so that the machine's load falls on all
//! alike).

use std::path::Path;
use std::time::Duration;

use crate::measure::{Bin, median, verdict};
use crate::process::{Window, warm_cache, window};
use crate::row;
use crate::support::{self, Redis};

/// Runs `bin` to completion with `args` and reads the RSS (KiB) from its
/// stop line.
pub(crate) fn stop_rss(bin: &Bin, redis: &Redis, cache: &Path, args: &[&str]) -> f64 {
    let mut cmd = bin.command(cache);
    cmd.arg("run")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("REDIS_URL", redis.url());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find(|l| l.contains("lookout stopped"))
        .and_then(|l| l.split("rss_kib=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rss in the stop line: {stderr}"))
}

/// Each of `bins`: RSS after 1,000 polls 2 ms apart, and CPU per poll and RSS at a
/// 20 ms cadence with three watchers; RSS against the first binary's,
/// with the allocator rule's 10 %.
pub fn compare(redis: &Redis, bins: &[Bin]) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = support::bundled(tmp.path());
    let cache = tmp.path().join("cache");
    for bin in bins {
        warm_cache(bin, redis, &cache, &plugins);
    }
    let dir = plugins.to_str().unwrap();
    let mut runs: Vec<Vec<(f64, Window)>> = bins.iter().map(|_| Vec::new()).collect();
    for _ in 0..3 {
        for (bin, runs) in bins.iter().zip(&mut runs) {
            let args = [
                "--polls",
                "1000",
                "--poll-interval",
                "0.002",
                "--plugins",
                dir,
            ];
            let rss = stop_rss(bin, redis, &cache, &args);
            let w = window(
                bin,
                redis,
                &cache,
                &plugins,
                "0.02",
                Duration::from_secs(10),
            );
            runs.push((rss, w));
        }
    }
    let base = median(runs[0].iter().map(|(rss, _)| *rss).collect());
    for (bin, runs) in bins.iter().zip(&runs) {
        let each = |f: &dyn Fn(&(f64, Window)) -> f64| -> (f64, String) {
            let values: Vec<f64> = runs.iter().map(f).collect();
            let all = values
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            (median(values), all)
        };
        let (rss, rss_all) = each(&|(rss, _)| rss / 1024.0);
        let change = (rss * 1024.0 / base - 1.0) * 100.0;
        row(
            &format!("RSS after 1,000 polls ({}), runs {rss_all}", bin.label),
            format!("{rss:.1} MB ({change:+.0}%)"),
            &verdict(&format!("within 10% of {}", bins[0].label), change <= 10.0),
        );
        let (us, us_all) = each(&|(_, w)| w.us_per_poll());
        row(
            &format!("  CPU per poll at 20 ms, three watchers, runs {us_all}"),
            format!("{us:.0} us"),
            "",
        );
        let (rss20, _) = each(&|(_, w)| w.rss_kib as f64 / 1024.0);
        row("  RSS after 10 s at 20 ms", format!("{rss20:.1} MB"), "");
        let (redis_us, _) = each(&|(_, w)| w.redis.usec() as f64 / w.polls.max(1) as f64);
        row(
            "  on the watched Redis per poll (commandstats usec)",
            format!("{redis_us:.1} us"),
            "",
        );
    }
}
