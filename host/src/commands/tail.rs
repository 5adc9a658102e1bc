//! `lookout tail` from the command line: the bus and stream resolved as
//! `lookout run` would, and the terminal's colours.

use anyhow::Result;
use clap::ArgMatches;

use super::args::{SettingsArgs, TailArgs};
use super::run::{Signals, authoring_runtime};

/// `lookout tail`: the bus and stream key resolved as `lookout run` would,
/// followed until SIGINT or SIGTERM (exit 0) or `--count` envelopes.
pub(crate) fn tail(args: TailArgs, given: &ArgMatches) -> Result<()> {
    use crate::tail::render::{Filter, Format};
    use std::io::IsTerminal as _;
    let settings = SettingsArgs {
        redis_url: args.redis_url,
        config: args.config,
        ..SettingsArgs::default()
    }
    .load(given)?;
    // The bus as `lookout run` publishes to it: `[publish] url` (or the
    // watched Redis) with `[publish] tls` over `[tls]` and the bus
    // credentials; a bus named with --bus takes `[tls]`.
    let endpoint = match args.bus {
        Some(bus) => {
            crate::checks::check_url(&bus)?;
            settings
                .tls
                .check(&bus)
                .map_err(|e| anyhow::anyhow!("[tls] for --bus: {e:#}"))?;
            crate::redis::endpoint::Endpoint::with_tls(&bus, &settings.tls)
        }
        None => settings.publish.endpoint(),
    };
    let format = if args.json || !std::io::stdout().is_terminal() {
        Format::Json
    } else {
        // https://no-color.org: set and not empty turns colours off.
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Format::Human { colour: !no_color }
    };
    let options = crate::tail::Options {
        endpoint,
        stream_key: args.stream.unwrap_or(settings.publish.stream_key),
        from_start: args.from_start,
        group: args.group.map(|name| crate::tail::Group {
            name,
            consumer: args.consumer.unwrap_or_else(crate::tail::default_consumer),
        }),
        filter: Filter {
            min_level: args.level,
            targets: args.target,
            instances: args.instance,
        },
        format,
        count: args.count,
        connect_timeout: settings.connect_timeout,
        response_timeout: settings.response_timeout,
    };
    authoring_runtime()?.block_on(async {
        let signals = Signals::register()?;
        let mut out = std::io::stdout().lock();
        crate::tail::tail(&options, &mut out, signals.shutdown).await
    })
}
