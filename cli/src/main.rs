//! `eventstore`: the command-line tool for libeventstore stores. A client of the
//! library's Rust API like any other; see docs/cli.md.

mod access;
mod check;
mod fail;
mod input;
mod progress;
mod read;
mod render;
mod write;

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use eventstore::Uuid;

use crate::fail::{Fail, EXIT_IO, EXIT_OK, EXIT_USAGE};

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  damage found, or not found (no such file, not a store, unknown stream), or a
     version conflict
  2  usage error: bad arguments, or malformed input (the line is named)
  3  I/O error, or the store is locked by another process

Read commands print JSON with --json (one object, or one per line for lists): the
schemas are in docs/cli.md. Progress goes to standard error, only on a terminal.";

/// Open, check, show, follow, back up and rescue libeventstore stores.
#[derive(Parser)]
#[command(name = "eventstore", version, after_help = EXIT_CODES, max_term_width = 100)]
struct Cli {
    /// Show no progress bar.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Facts about a store: format version, events, streams, data and file bytes,
    /// first and last commit time, index memory, whether a writer has it open.
    Info {
        /// The store file.
        path: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Read and check every byte of a store without opening it (no lock, never writes).
    ///
    /// Exit 0 when sound (a torn last write or preallocated space, which an open cuts
    /// off, is reported but is not damage), 1 when damaged: each damaged range is shown
    /// with its byte offsets, the positions and events it held, and what a salvage
    /// would keep.
    Verify {
        /// The store file.
        path: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every stream in order of creation: id, events, last version, first and last
    /// global position.
    Streams {
        /// The store file.
        path: PathBuf,
        /// Start at the stream with this index (0: the first stream created).
        #[arg(long, default_value_t = 0, value_name = "INDEX")]
        from: u64,
        /// Show at most this many streams.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Events as a table, or as JSON lines with --json (the export schema).
    ///
    /// Payload and metadata are shown as JSON when they are JSON, else as text when
    /// UTF-8, else as base64.
    #[command(visible_alias = "cat")]
    Dump {
        /// The store file.
        path: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// First global position (included).
        #[arg(long, value_name = "POS", default_value_t = 0)]
        from: u64,
        /// Last global position (included).
        #[arg(long, value_name = "POS")]
        to: Option<u64>,
        /// Show at most N events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Newest first.
        #[arg(long)]
        backward: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One event, found by its event id: a table row, or with --json one line of the
    /// event schema. Exit 1 when no event has that id.
    Event {
        /// The store file.
        path: PathBuf,
        /// The event id (a UUID).
        id: Uuid,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The last N events; with -f, then follow new events as they are acknowledged.
    ///
    /// The store is opened read-only: it follows a writer in any process, showing each
    /// event once its append is durable (a subscription: no polling). With --stream ID
    /// of a stream that has no events yet, -f waits for its first events (without -f
    /// that is exit 1, not found).
    Tail {
        /// The store file.
        path: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// How many of the last events to show.
        #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
        lines: u64,
        /// Keep running and show new events as they are acknowledged (stop with Ctrl-C,
        /// or with --max / --timeout).
        #[arg(short, long)]
        follow: bool,
        /// With -f: stop after showing N new events.
        #[arg(long, value_name = "N", requires = "follow")]
        max: Option<u64>,
        /// With -f: stop after following for SECS seconds (fractions allowed).
        #[arg(long, value_name = "SECS", requires = "follow", value_parser = seconds)]
        timeout: Option<Duration>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Append JSON-lines events from standard input; creates the store if needed.
    ///
    /// Each line is one event ({"stream_id", "event_type", "payload", "metadata",
    /// "event_id", "expected_version"}) appended as its own batch, or a whole batch
    /// ({"stream_id", "expected_version", "events": [...]}). With --batch N,
    /// consecutive event lines of one stream are appended N at a time. Prints the
    /// positions of every batch. A malformed line stops the command with its line
    /// number; nothing of that line (or of its unfinished batch) is written.
    Append {
        /// The store file.
        path: PathBuf,
        /// Group up to N consecutive event lines of the same stream into one batch.
        #[arg(long, value_name = "N")]
        batch: Option<NonZeroU64>,
        /// Report each batch as a JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The whole log as JSON lines (the event schema of docs/cli.md), for `import`
    /// or for moving to another event store.
    Export {
        /// The store file.
        path: PathBuf,
        /// Start at this global position.
        #[arg(long, value_name = "POS", default_value_t = 0)]
        from: u64,
        /// Accepted as by every read command; export always writes JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a log from `export` output on standard input into a new store: ids,
    /// streams, versions, positions and commit times are kept.
    ///
    /// DEST must not exist; the store is built beside it and renamed into place only
    /// when complete, so a failed import leaves nothing.
    Import {
        /// The new file to write (it must not exist).
        dest: PathBuf,
        /// One JSON object at the end.
        #[arg(long)]
        json: bool,
    },
    /// Copy every acknowledged event to a new file DEST while the store is in use (no
    /// lock held for long, whole batches only); the copy is verified before it is
    /// renamed into place.
    Backup {
        /// The store file.
        path: PathBuf,
        /// The new file to write (it must not exist).
        dest: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Copy every intact batch of a damaged store into a new store DEST, in order,
    /// and report exactly what was lost. Never modifies PATH.
    ///
    /// Exit 0 when nothing was lost, 1 when damage was found (DEST holds everything
    /// intact all the same). Events after a lost range move down to close the gap.
    Salvage {
        /// The store file.
        path: PathBuf,
        /// The new file to write (it must not exist).
        dest: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Which events to show.
#[derive(Args, Clone)]
struct FilterArgs {
    /// Only this stream's events.
    #[arg(long, value_name = "ID")]
    stream: Option<Uuid>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Only events whose type starts with P (repeatable).
    #[arg(long = "type-prefix", value_name = "P")]
    prefixes: Vec<String>,
}

impl From<FilterArgs> for eventstore::Filter {
    fn from(f: FilterArgs) -> eventstore::Filter {
        eventstore::Filter {
            stream_id: f.stream,
            event_types: f.types,
            event_type_prefixes: f.prefixes,
        }
    }
}

/// A duration in seconds, such as `2` or `0.5`.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string().replace('\n', " ");
        eprintln!("eventstore: internal error (a bug, please report it): {text}");
    }));
    let code = match std::panic::catch_unwind(run) {
        Ok(code) => code,
        Err(_) => EXIT_IO,
    };
    std::process::exit(code);
}

fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return EXIT_OK;
        }
        Err(e) => {
            eprintln!("eventstore: {}", one_line(&e.render().to_string()));
            return EXIT_USAGE;
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(Fail::ClosedPipe) => EXIT_OK,
        Err(Fail::Exit { code, message }) => {
            eprintln!("eventstore: error: {message}");
            code
        }
    }
}

/// Clap's error without its usage block, on one line.
fn one_line(text: &str) -> String {
    let main = text.split("\n\nUsage:").next().unwrap_or(text);
    let joined: Vec<&str> = main.split_whitespace().collect();
    format!(
        "{}; see `eventstore help` or `eventstore help COMMAND`",
        joined.join(" ")
    )
}

fn dispatch(cli: Cli) -> fail::Result<i32> {
    let quiet = cli.quiet;
    progress::set_quiet(quiet);
    match cli.command {
        Command::Info { path, json } => read::info(&path, json),
        Command::Verify { path, json } => check::verify(&path, json, quiet),
        Command::Streams {
            path,
            from,
            limit,
            json,
        } => read::streams(&path, from, limit, json),
        Command::Dump {
            path,
            filter,
            from,
            to,
            limit,
            backward,
            json,
        } => read::dump(
            &path,
            &filter.into(),
            access::Range {
                from,
                to: to.unwrap_or(u64::MAX),
                backward,
            },
            limit,
            json,
            quiet,
        ),
        Command::Event { path, id, json } => read::event(&path, id, json),
        Command::Tail {
            path,
            filter,
            lines,
            follow,
            max,
            timeout,
            json,
        } => read::tail(
            &path,
            &filter.into(),
            lines,
            follow.then_some(read::Follow { max, timeout }),
            json,
        ),
        Command::Append { path, batch, json } => {
            write::append(&path, batch.map(NonZeroU64::get), json, quiet)
        }
        Command::Export {
            path,
            from,
            json: _,
        } => read::export(&path, from, quiet),
        Command::Import { dest, json } => write::import(&dest, json, quiet),
        Command::Backup { path, dest, json } => check::backup(&path, &dest, json, quiet),
        Command::Salvage { path, dest, json } => check::salvage(&path, &dest, json, quiet),
    }
}
