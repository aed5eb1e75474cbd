//! Progress on stderr: bars on a terminal; plain lines when stderr is a pipe or a file
//! (`repoctl copy … 2>&1 | tee copy.log`), so that a log shows how far a copy got
//! even when it is killed.
//!
//! In line mode every task (a table being copied, one side of a table being verified)
//! prints a line `label: N/M rows, R rows/s, T s` at least every `every` (a ticker
//! thread prints for a task whose pages are slow) and a last line when it finishes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default longest gap between two progress lines.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Nothing.
    Off,
    /// indicatif bars (stderr is a terminal).
    Bars,
    /// Plain lines at least this often (stderr is not a terminal).
    Lines(Duration),
}

impl Mode {
    /// Bars on a terminal, lines elsewhere, nothing when `enabled` is false.
    pub fn for_stderr(enabled: bool, every: Duration) -> Mode {
        if !enabled {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines(every)
        }
    }
}

/// Line state of one task.
#[derive(Debug)]
struct LineTask {
    label: String,
    total: Option<u64>,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    finished: AtomicBool,
}

impl LineTask {
    fn line(&self, last: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let count = match self.total {
            Some(t) => format!("{done}/{t}"),
            None => done.to_string(),
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "{}: {count} rows, {rate:.0} rows/s, {secs:.1}s{}",
            self.label,
            if last { ", done" } else { "" }
        );
        *self
            .last_line
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

/// The progress display of one run.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    tasks: Arc<Mutex<Vec<Arc<LineTask>>>>,
    stop: Arc<AtomicBool>,
}

impl Progress {
    /// A display in `mode`; in line mode a ticker thread runs until it is dropped.
    pub fn new(mode: Mode) -> Progress {
        let p = Progress {
            mode,
            tasks: Arc::default(),
            stop: Arc::default(),
        };
        if let Mode::Lines(every) = mode {
            let tasks = Arc::clone(&p.tasks);
            let stop = Arc::clone(&p.stop);
            let tick = every.clamp(Duration::from_millis(50), Duration::from_secs(1));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    let mut tasks = tasks.lock().unwrap_or_else(PoisonError::into_inner);
                    tasks.retain(|t| !t.finished.load(Ordering::Relaxed));
                    for t in tasks.iter() {
                        let last = *t.last_line.lock().unwrap_or_else(PoisonError::into_inner);
                        if last.elapsed() >= every {
                            t.line(false);
                        }
                    }
                }
            });
        }
        p
    }

    /// No display.
    pub fn off() -> Progress {
        Progress::new(Mode::Off)
    }

    /// Whether progress goes out as plain lines.
    pub fn is_lines(&self) -> bool {
        matches!(self.mode, Mode::Lines(_))
    }

    /// Prints `text` as the first line of the log (line mode only; a terminal gets the
    /// summary on stdout).
    pub fn header(&self, text: &str) {
        if self.is_lines() {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// Starts a task of `total` rows (when known).
    pub fn task(&self, label: &str, total: Option<u64>) -> Task {
        match self.mode {
            Mode::Off => Task(Kind::Off),
            Mode::Bars => {
                let pb = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{prefix:<24} [{bar:30}] {human_pos}/{human_len} rows  {rate:>12}  {elapsed_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", state.per_sec());
                    },
                )
                .progress_chars("=> ");
                pb.set_style(style);
                pb.set_prefix(label.to_owned());
                Task(Kind::Bar(pb))
            }
            Mode::Lines(every) => {
                let t = Arc::new(LineTask {
                    label: label.to_owned(),
                    total,
                    done: AtomicU64::new(0),
                    started: Instant::now(),
                    last_line: Mutex::new(Instant::now()),
                    finished: AtomicBool::new(false),
                });
                self.tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Arc::clone(&t));
                Task(Kind::Line { task: t, every })
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One task's progress (a table being copied, one side of a table being verified).
#[derive(Debug)]
pub struct Task(Kind);

#[derive(Debug)]
enum Kind {
    Off,
    Bar(ProgressBar),
    Line {
        task: Arc<LineTask>,
        every: Duration,
    },
}

impl Task {
    /// `n` more rows done.
    pub fn inc(&self, n: u64) {
        match &self.0 {
            Kind::Off => {}
            Kind::Bar(pb) => pb.inc(n),
            Kind::Line { task, every } => {
                task.done.fetch_add(n, Ordering::Relaxed);
                let last = *task
                    .last_line
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if last.elapsed() >= *every {
                    task.line(false);
                }
            }
        }
    }

    /// The task is complete.
    pub fn finish(&self) {
        match &self.0 {
            Kind::Off => {}
            Kind::Bar(pb) => pb.finish(),
            Kind::Line { task, .. } => {
                task.finished.store(true, Ordering::Relaxed);
                task.line(true);
            }
        }
    }
}
