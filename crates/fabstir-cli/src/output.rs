//! Writing to stdout. A closed stdout (`fabstir nodes | head`) is not an error: the rest of the
//! output is dropped and the command still finishes (and stops what it started).

use std::io::Write as _;

/// Writes a line to stdout; see the module's documentation for a closed stdout.
macro_rules! outln {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// [`outln!`] without the newline, flushed at once (streamed tokens).
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// Writes and flushes `args` to stdout, ignoring errors.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    // Errors (a closed pipe above all) are ignored on purpose: see the module's documentation.
    let _ = stdout.write_fmt(args).and_then(|()| stdout.flush());
}
