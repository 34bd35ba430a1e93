//! Progress on standard error: a bar with rate and ETA when standard error is a
//! terminal, nothing when it is not (piped, redirected) or with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressState, ProgressStyle};

pub struct Progress(Option<ProgressBar>);

/// `--quiet`, for the progress shown where the command's options are not at hand
/// (opening a store).
static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A spinner while `what` runs (opening a store reads its log: seconds at 10M
/// events), on a terminal only.
pub fn while_running<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let spinner = Progress::new(QUIET.load(Ordering::Relaxed), what, Unit::None, None);
    let result = f();
    spinner.done();
    result
}

pub enum Unit {
    Bytes,
    Events,
    /// A spinner with its message only.
    None,
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
                    Unit::Bytes => "{bytes} {rate}",
                    Unit::Events => "{human_pos} events {rate}",
                    Unit::None => "{elapsed}",
                };
                let style = ProgressStyle::with_template(&format!("{{spinner}} {{msg}} {count}"))
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
