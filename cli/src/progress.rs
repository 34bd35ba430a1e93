//! Progress on standard error: a bar with rate and ETA when standard error is a
//! terminal, nothing when it is not (piped, redirected) or with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress(Option<ProgressBar>);

pub enum Unit {
    Bytes,
    Events,
}

impl Progress {
    /// A bar counting to `total` (a spinner when the total is unknown).
    pub fn new(quiet: bool, what: &str, unit: Unit, total: Option<u64>) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let (count, rate) = match unit {
            Unit::Bytes => ("{bytes}/{total_bytes}", "{bytes_per_sec}"),
            Unit::Events => ("{human_pos}/{human_len} events", "{per_sec}"),
        };
        let bar = match total {
            Some(n) => {
                let style = ProgressStyle::with_template(&format!(
                    "{{msg}} [{{bar:30}}] {count} {rate} ETA {{eta}}"
                ))
                .expect("a valid template")
                .progress_chars("=> ");
                ProgressBar::new(n).with_style(style)
            }
            None => {
                let count = match unit {
                    Unit::Bytes => "{bytes}",
                    Unit::Events => "{human_pos} events",
                };
                let style =
                    ProgressStyle::with_template(&format!("{{spinner}} {{msg}} {count} {rate}"))
                        .expect("a valid template");
                ProgressBar::new_spinner().with_style(style)
            }
        };
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(Some(bar))
    }

    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(done);
        }
    }

    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }

    /// Removes the bar, so that what follows is not mixed with it.
    pub fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}
