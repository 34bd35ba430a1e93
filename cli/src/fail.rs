//! Failures of a command: a one-line message naming the cause and what to do, and
//! the documented exit code.

use std::io;
use std::path::Path;

use eventstore::Error;

/// Exit codes (documented in `eventstore --help` and docs/cli.md).
pub const EXIT_OK: i32 = 0;
/// Damage found, or something not found (file, stream), or a version conflict.
pub const EXIT_FOUND: i32 = 1;
/// Usage: bad arguments or malformed input.
pub const EXIT_USAGE: i32 = 2;
/// I/O: the store is locked, or reading or writing failed.
pub const EXIT_IO: i32 = 3;

#[derive(Debug)]
pub enum Fail {
    /// Print `message` on one line, exit with `code`.
    Exit { code: i32, message: String },
    /// Standard output was closed (`| head`): stop quietly.
    ClosedPipe,
}

pub type Result<T> = std::result::Result<T, Fail>;

impl Fail {
    pub fn new(code: i32, message: impl Into<String>) -> Fail {
        Fail::Exit {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Fail {
        Fail::new(EXIT_USAGE, message)
    }

    /// A failure of the store at `path`, with advice for `what` the command does.
    pub fn store(path: &Path, e: Error) -> Fail {
        let p = path.display();
        match e {
            // Only writers lock: read commands open read-only and never meet this.
            Error::Locked { .. } => Fail::new(
                EXIT_IO,
                format!("{p} is locked: another process has it open for writing; stop that process (or let it close the store) and retry"),
            ),
            Error::InvalidHeader { .. } => Fail::new(
                EXIT_FOUND,
                format!("{e}; check the path, or run `eventstore verify {p}`"),
            ),
            Error::CorruptRecord { .. } => Fail::new(
                EXIT_FOUND,
                format!("{p} is damaged: {e}; run `eventstore verify {p}` to see what is lost and `eventstore salvage {p} NEW` to copy every intact batch to a new store"),
            ),
            Error::StreamNotFound { stream_id } => Fail::new(
                EXIT_FOUND,
                format!("stream {stream_id} not found in {p} (it has no events); list the streams with `eventstore streams {p}`"),
            ),
            Error::WrongExpectedVersion { .. } => Fail::new(
                EXIT_FOUND,
                format!("{e}; read the stream's last version with `eventstore streams {p}` and retry with it"),
            ),
            Error::InvalidArgument(_) | Error::EventTooLarge { .. } => Fail::new(EXIT_USAGE, e.to_string()),
            Error::DuplicateEventId { .. } => Fail::new(
                EXIT_FOUND,
                format!("{e}; an event id is written once per store: give new events new ids (or none)"),
            ),
            Error::EventNotFound { .. } => Fail::new(EXIT_FOUND, e.to_string()),
            Error::Poisoned { .. } => Fail::new(
                EXIT_IO,
                format!("{e}; check the disk (space, errors) and retry"),
            ),
            Error::ReadOnly { .. } => Fail::new(
                EXIT_USAGE,
                format!("{e}; this command writes: open the store without read-only"),
            ),
            Error::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Fail::new(EXIT_FOUND, format!("{e}; check the path"))
            }
            Error::Io { .. } => Fail::new(
                EXIT_IO,
                format!("{e}; check the path, the permissions and the disk"),
            ),
        }
    }

    /// A failed write to standard output.
    pub fn stdout(e: io::Error) -> Fail {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Fail::ClosedPipe
        } else {
            Fail::new(EXIT_IO, format!("write to standard output: {e}"))
        }
    }
}

/// Adds nothing but brevity: `out.write(..).map_err(Fail::stdout)?`.
pub trait OrStdout<T> {
    fn or_stdout(self) -> Result<T>;
}

impl<T> OrStdout<T> for io::Result<T> {
    fn or_stdout(self) -> Result<T> {
        self.map_err(Fail::stdout)
    }
}
