//! What the daemon asks of its host at start: enough open descriptors for its servers.

/// Raises the soft limit of open descriptors to the hard one: the spool keeps one folder
/// handle per server (plus at most 256 claims folders), so 10,000 servers need over
/// 10,000 descriptors, and the usual soft limit is 1,024 (the unit sets 65,536). Warns
/// when the limit cannot be raised, or is too low for the configured servers.
pub(crate) fn raise_descriptor_limit(servers: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "cannot raise the open-descriptor limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let need = servers as u64 + 1024;
    if now < need {
        tracing::warn!(
            limit = now,
            need,
            "the open-descriptor limit is low for this many servers (a folder handle each, plus uploads); raise LimitNOFILE"
        );
    }
}
