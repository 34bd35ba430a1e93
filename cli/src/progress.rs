//! Progress on standard error: a bar with rate and ETA when standard error is a
//! terminal, nothing when it is not (piped, redirected) or with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressState, ProgressStyle};

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
        let bytes = matches!(unit, Unit::Bytes);
        let count = if bytes {
            "{bytes}/{total_bytes}"
        } else {
            "{human_pos}/{human_len} events"
        };
        // Whole units per second: indicatif's own rates print fractions.
        let rate = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let per_sec = state.per_sec() as u64;
            let _ = if bytes {
                write!(w, "{}/s", HumanBytes(per_sec))
            } else {
                write!(w, "{}/s", HumanCount(per_sec))
            };
        };
        let bar = match total {
            Some(n) => {
                let style = ProgressStyle::with_template(&format!(
                    "{{msg}} [{{bar:25}}] {count} {{rate}} ETA {{eta}}"
                ))
                .expect("a valid template")
                .with_key("rate", rate)
                .progress_chars("=> ");
                ProgressBar::new(n).with_style(style)
            }
            None => {
                let count = match unit {
                    Unit::Bytes => "{bytes}",
                    Unit::Events => "{human_pos} events",
                };
                let style =
                    ProgressStyle::with_template(&format!("{{spinner}} {{msg}} {count} {{rate}}"))
                        .expect("a valid template")
                        .with_key("rate", rate);
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
