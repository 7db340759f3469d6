//! What a plugin call runs with: its memory and table limits, its log (bounded, escaped) and its
//! deny-all WASI context.

use wasmtime::ResourceLimiter;

use super::bindings::host;

/// Plugin log lines kept per call, and bytes per line: a plugin cannot flood the operator's log.
const MAX_LOG_LINES: usize = 64;
const MAX_LOG_BYTES: usize = 1024;

/// Per-call host state: the memory limiter, the plugin's log and its deny-all WASI context.
pub(super) struct HostState {
    pub(super) plugin: String,
    pub(super) memory_limit: usize,
    pub(super) memory_denied: bool,
    pub(super) log_lines: usize,
    pub(super) wasi: wasmtime_wasi::WasiCtx,
    pub(super) table: wasmtime::component::ResourceTable,
    pub(super) output: super::wasi::GuestOutput,
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    /// One line of the plugin's log, within the per-call line cap.
    pub(super) fn log_line(&mut self, level: host::LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return;
        }
        let message = escape_log(&truncate(message, MAX_LOG_BYTES));
        let plugin = self.plugin.as_str();
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            host::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    /// What the plugin wrote to stdout and stderr, line by line into its log (same caps).
    pub(super) fn flush_output(&mut self) {
        let (bytes, dropped) = self.output.take();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.log_line(host::LogLevel::Info, String::from_utf8_lossy(line).into_owned());
        }
        if dropped > 0 {
            self.log_line(host::LogLevel::Warn, format!("{dropped} more bytes of output dropped (cap {} bytes per call)", super::wasi::MAX_OUTPUT_BYTES));
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        self.log_line(level, message);
    }
}

impl super::bindings::types::Host for HostState {}

/// A plugin's newline or control character must not forge an operator log line (in the human
/// format, a newline starts one): control characters are written as escapes (`\n`).
pub fn escape_log(message: &str) -> String {
    message.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// `s` cut to `max` bytes (and an ellipsis), holding no more memory than that: a truncated
/// `String` keeps its capacity, so an 8 MiB description cut to 1 KiB would still hold 8 MiB.
pub(super) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s.shrink_to_fit();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_log_lines_cannot_forge_operator_lines() {
        let forged = "innocent\n2026-11-29T00:00:00Z  INFO backup_operator: forged\r\u{1b}[31m";
        let escaped = escape_log(forged);
        assert!(!escaped.contains('\n') && !escaped.contains('\r') && !escaped.contains('\u{1b}'), "{escaped}");
        assert!(escaped.starts_with("innocent\\n2026"), "{escaped}");
        assert_eq!(escape_log("ünïcode stays"), "ünïcode stays");
    }
}
