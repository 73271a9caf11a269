//! The download progress bar: indicatif draws it (redrawn in place at most ten times a second
//! on a terminal, hidden otherwise) with upstream's line format from `format`; off a terminal
//! only the final line is printed.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::download::Progress;
use crate::format::render_progress_line;

pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new() -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        Bar { bar }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Progress for Bar {
    fn update(&mut self, done: u64, total: u64, bytes_per_second: f64) {
        self.bar.set_message(render_progress_line(done, total, bytes_per_second));
    }

    fn finish(&mut self, done: u64, total: u64, bytes_per_second: f64) {
        let line = render_progress_line(done, total, bytes_per_second);
        if std::io::stderr().is_terminal() {
            self.bar.finish_with_message(line);
        } else {
            self.bar.finish_and_clear();
            eprintln!("{line}");
        }
    }
}
