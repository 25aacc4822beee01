//! Progress on long inputs, for a person watching: on stderr, only when stderr is a terminal and the records
//! themselves are not being printed to one (they would tear the bar). Piped or redirected, nothing is drawn.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;

/// Whether progress may be drawn: stderr is a terminal, and stdout is not one when `prints_records`.
pub fn wanted(prints_records: bool) -> bool {
    std::io::stderr().is_terminal() && !(prints_records && std::io::stdout().is_terminal())
}

/// A bar over `total` units (`bytes` formats them as sizes), hidden unless [`wanted`].
pub fn bar(total: u64, bytes: bool, prints_records: bool) -> ProgressBar {
    if !wanted(prints_records) {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{elapsed_precise} [{bar:40}] {bytes}/{total_bytes} {msg}"
    } else {
        "{elapsed_precise} [{bar:40}] {pos}/{len} files {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style)
}
