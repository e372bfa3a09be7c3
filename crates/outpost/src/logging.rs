//! Logging to stderr through tracing-subscriber, text or JSON, filtered by `RUST_LOG`
//! (default `info`). The SDK's signing and wire logs are capped at debug whatever the
//! filter says, so no signature, token or secret is ever printed.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, LevelFilter};

use crate::LogFormat;

/// Targets whose trace level could print signatures, credentials or raw wire data.
const CAPPED: [&str; 8] = [
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_config",
    "hyper",
    "hyper_util",
];

/// Installs the global subscriber. A one-shot command (`daemon` false) prints its own
/// one-line errors, so unless `RUST_LOG` says otherwise the SDK's warnings (the
/// multi-line dump of an IMDS probe that found no instance) are not shown.
pub fn init(format: LogFormat, daemon: bool) {
    let default = if daemon {
        "info"
    } else {
        "info,aws_config=error,aws_runtime=error"
    };
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.into());
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(&spec);
    if filter
        .max_level_hint()
        .is_none_or(|l| l > LevelFilter::DEBUG)
    {
        for t in CAPPED {
            if let Ok(d) = format!("{t}=debug").parse::<Directive>() {
                filter = filter.add_directive(d);
            }
        }
    }
    // Colours only on a terminal: the journal and log files get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}
