//! A child process for the storage fault tests (tests/storage.rs): opens an SQLite file, takes
//! `BEGIN EXCLUSIVE` on it, prints `LOCKED` and holds the lock until killed. Not useful on its own.
//!
//! `db-holder FILE`

use std::io::Write;
use std::time::Duration;

fn main() {
    let Some(file) = std::env::args().nth(1) else {
        eprintln!("usage: db-holder FILE");
        std::process::exit(2);
    };
    let conn = match rusqlite::Connection::open(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("db-holder: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = conn.execute_batch("BEGIN EXCLUSIVE;") {
        eprintln!("db-holder: {e}");
        std::process::exit(1);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LOCKED");
    let _ = out.flush();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
