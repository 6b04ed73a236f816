//! The one live status line on stderr (stdout stays machine-readable): rewritten in place on a
//! terminal, a plain line at a slower pace otherwise, so logs stay readable.
use std::{
    io::{IsTerminal as _, Write as _},
    time::Duration,
};

#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveLine {
    tty: bool,
}

impl LiveLine {
    #[must_use]
    pub(crate) fn on_stderr() -> Self {
        Self { tty: std::io::stderr().is_terminal() }
    }

    #[must_use]
    pub(crate) const fn is_terminal(self) -> bool {
        self.tty
    }

    /// How often to refresh it: four times a second on a terminal, every 5 s in a log.
    #[must_use]
    pub(crate) const fn period(self) -> Duration {
        if self.tty { Duration::from_millis(250) } else { Duration::from_secs(5) }
    }

    pub(crate) fn show(self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Clears the line on a terminal (a log keeps its lines).
    pub(crate) fn finish(self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
