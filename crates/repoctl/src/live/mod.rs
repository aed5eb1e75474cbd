//! `repoctl live`: online migration while the application keeps writing.
//!
//! ```text
//! repoctl live start   --from SRC --to DST [--truncate | --resume] [--dry-run] [copy options]
//! repoctl live sync    --from SRC --to DST [--follow] [--interval SECONDS] [--batch-size N]
//! repoctl live status  --from SRC
//! repoctl live cutover --from SRC --to DST [--batch-size N] [--report FILE]
//! repoctl live abort   --from SRC
//! ```
//!
//! 1. `start` installs change capture on the source ([`capture`]), then runs the
//!    offline copy ([`crate::copy`]) from one snapshot of the source while the
//!    application goes on writing. Its verification is left to `cutover` (the source
//!    moves on meanwhile).
//! 2. `sync` replays the captured changes ([`replay`]) and prints the lag (changes
//!    pending, seconds behind the oldest); `--follow` repeats until stopped or until a
//!    cutover ended the migration. A killed `sync` is simply run again.
//! 3. `cutover` catches up once more while writes still run, sets the maintenance
//!    flag (the pause triggers: writes get the retryable
//!    `Unavailable { reason: Maintenance }`), replays the last changes, verifies the
//!    whole target against the source, resets the target's sequences and prints the
//!    measured pause and "switch DATABASE_URL now". The flag stays set on the old
//!    database, so a client still configured with the old URL gets `Maintenance`
//!    instead of writing into a database nobody reads any more; change capture is
//!    removed. If the verification fails, the flag is lifted and capture stays: the
//!    application goes on with the source, nothing lost.
//! 4. `abort` removes everything repoctl installed on a database (capture triggers,
//!    change table, pause triggers): the source is as before, apart from the rows the
//!    application wrote. After a successful cutover it lifts the flag on the old
//!    database, for example before falling back into it.
//!
//! The same commands work from PostgreSQL to SQLite (fallback): the triggers are then
//! PostgreSQL triggers.

pub mod capture;
pub mod replay;

use crate::conn::{DbConn, Endpoint, Role};
use crate::copy::{self, CopyOptions, OnError};
use crate::error::{exit, Failure, Secrets};
use crate::progress::{Mode, Progress};
use crate::report::{self, Refusal};
use crate::schema::Table;
use crate::verify;
use diesel::connection::SimpleConnection;
use replay::BatchOutcome;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `repoctl live` actions.
#[derive(Debug, clap::Subcommand)]
pub enum LiveAction {
    /// Install change capture on the source, then copy a snapshot to the target.
    Start(StartArgs),
    /// Replay the changes captured since the snapshot; print the lag.
    Sync(SyncArgs),
    /// Changes pending and whether writes are paused.
    Status(SourceArgs),
    /// Pause writes, replay the last changes, verify, reset sequences: switch then.
    Cutover(CutoverArgs),
    /// Remove everything repoctl installed on a database (capture, change table,
    /// maintenance flag).
    Abort(SourceArgs),
}

/// The two databases of a live migration.
#[derive(Debug, clap::Args)]
pub struct Databases {
    /// Source database URL (the one the application writes to).
    #[arg(long)]
    pub from: String,
    /// Target database URL (migrated first when it has no schema).
    #[arg(long)]
    pub to: String,
    /// Rows per page of the snapshot copy; changes per replay transaction.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
}

/// `live start` arguments.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Source, target and batch size.
    #[command(flatten)]
    pub db: Databases,
    /// Check everything and copy nothing; install nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Empty every table of a non-empty target first.
    #[arg(long, conflicts_with = "resume")]
    pub truncate: bool,
    /// Continue a `live start` whose copy was interrupted (capture stays as installed).
    #[arg(long)]
    pub resume: bool,
    /// Write the copy's JSON report.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Longest gap between two progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10.0)]
    pub progress_every: f64,
}

/// `live sync` arguments.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Source, target and batch size.
    #[command(flatten)]
    pub db: Databases,
    /// Keep replaying until interrupted or until a cutover ends the migration.
    #[arg(long)]
    pub follow: bool,
    /// Seconds between two rounds with `--follow` when nothing was pending.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Longest gap between two lag lines with `--follow`.
    #[arg(long, default_value_t = 10.0)]
    pub progress_every: f64,
}

/// Arguments naming one database.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// The database (the migration's source).
    #[arg(long)]
    pub from: String,
}

/// `live cutover` arguments.
#[derive(Debug, clap::Args)]
pub struct CutoverArgs {
    /// Source, target and batch size.
    #[command(flatten)]
    pub db: Databases,
    /// Write a JSON report (pause, replay, verification).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs a `live` action; returns the exit code.
pub fn run(action: LiveAction, secrets: &mut Secrets) -> Result<u8, Failure> {
    match action {
        LiveAction::Start(a) => start(a, secrets),
        LiveAction::Sync(a) => sync(a, secrets),
        LiveAction::Status(a) => status(a, secrets),
        LiveAction::Cutover(a) => cutover(a, secrets),
        LiveAction::Abort(a) => abort(a, secrets),
    }
}

/// Opens the source for live work: written (change table), with a long busy timeout
/// (the application holds SQLite's write lock now and then).
fn open_source(endpoint: &Endpoint, secrets: &Secrets) -> Result<DbConn, Failure> {
    if !endpoint.exists() {
        return Err(Failure::connection(format!(
            "SQLite database {} does not exist",
            endpoint.display()
        )));
    }
    let mut conn = DbConn::open(endpoint, Role::Write, secrets)?;
    if let DbConn::Sqlite(c) = &mut conn {
        c.batch_execute("PRAGMA busy_timeout = 60000")?;
    }
    Ok(conn)
}

fn not_started(from: &Endpoint) -> Failure {
    Failure::not_ready(format!(
        "no live migration is running on {} (no change table): run `repoctl live start` first",
        from.display()
    ))
}

fn start(a: StartArgs, secrets: &mut Secrets) -> Result<u8, Failure> {
    let from = Endpoint::parse(&a.db.from, secrets)?;
    let to = Endpoint::parse(&a.db.to, secrets)?;
    if copy::same_database(&from, &to) {
        return Err(Failure {
            code: exit::USAGE,
            message: "source and target are the same database".into(),
        });
    }
    let mut src = open_source(&from, secrets)?;
    let there = capture::installed(&mut src)?;
    if there.paused() {
        return Err(Failure::not_ready(format!(
            "writes to {} are paused by an earlier cutover (it is an old database); lift the \
             flag with `repoctl live abort --from …` if it really is the application's database",
            from.display()
        )));
    }
    if to.exists() {
        let mut t = DbConn::open(&to, Role::Read, secrets)?;
        if capture::installed(&mut t)?.paused() {
            return Err(Failure::not_ready(format!(
                "the target {} still has the maintenance flag of an earlier cutover; lift it with \
                 `repoctl live abort --from …` on it, or migrate into a new database",
                to.display()
            )));
        }
    }
    match (there.capturing(), a.resume, a.dry_run) {
        (true, false, _) => {
            return Err(Failure::not_ready(format!(
                "a live migration is already running on {}: continue it with `repoctl live sync`, \
                 resume its copy with `repoctl live start --resume`, or end it with \
                 `repoctl live abort`",
                from.display()
            )))
        }
        (false, true, _) => return Err(not_started(&from)),
        (false, false, false) => {
            capture::install_capture(&mut src, &Table::ALL)?;
            println!(
                "change capture installed on {}: triggers on {} tables → {}",
                from.display(),
                Table::ALL.len(),
                capture::CHANGES
            );
        }
        _ => {}
    }
    drop(src);
    let opts = CopyOptions {
        from: from.clone(),
        to: to.clone(),
        tables: None,
        batch_size: a.db.batch_size as usize,
        dry_run: a.dry_run,
        truncate: a.truncate,
        resume: a.resume,
        on_error: OnError::Stop,
        report: a.report,
        progress: !a.no_progress,
        progress_every: Duration::from_secs_f64(a.progress_every.clamp(0.0, 3600.0)),
        // The source moves on during the copy: `cutover` verifies, in the pause.
        verify: false,
    };
    let code = copy::run(&opts, secrets)?;
    if a.dry_run {
        println!(
            "\nlive start (dry run): would install change capture on {} ({} triggers and the \
             table {}), then copy as above",
            from.display(),
            Table::ALL.len() * 3,
            capture::CHANGES
        );
        return Ok(code);
    }
    if code != exit::OK {
        println!(
            "\nthe copy did not complete (exit code {code}); change capture stays installed: fix \
             the cause and run `repoctl live start --resume …`, or remove it with \
             `repoctl live abort --from …`"
        );
        return Ok(code);
    }
    println!(
        "\nsnapshot copied; the application may keep writing. Next: `repoctl live sync --from … \
         --to … --follow` until the lag is small, then `repoctl live cutover --from … --to …`"
    );
    Ok(exit::OK)
}

/// Replays until no change is pending or a batch was not full; returns the total.
fn catch_up(
    src: &mut DbConn,
    dst: &mut DbConn,
    from: &Endpoint,
    batch: usize,
    until_empty: bool,
) -> Result<Result<BatchOutcome, Vec<Refusal>>, Failure> {
    let mut total = BatchOutcome::default();
    loop {
        let result = match replay::replay_batch(src, dst, from.origin(), batch) {
            // A row's current state can take a unique value (a username, a content
            // hash) that another row gave up by a change further down the table:
            // replaying everything pending at once applies that change too (its
            // deletes first).
            Err(e) if e.message.to_ascii_lowercase().contains("unique") => {
                replay::replay_batch(src, dst, from.origin(), i64::MAX as usize)?
            }
            other => other?,
        };
        match result {
            Err(refusals) => return Ok(Err(refusals)),
            Ok(None) => return Ok(Ok(total)),
            Ok(Some(o)) => {
                let full = o.changes as usize >= batch;
                total.add(&o);
                if !full && !until_empty {
                    return Ok(Ok(total));
                }
            }
        }
    }
}

fn refusal_failure(refusals: &[Refusal]) -> Failure {
    Failure {
        code: exit::REFUSED,
        message: format!(
            "rows changed since the snapshot cannot be represented on the target; nothing of \
             their batch was applied and their changes stay pending (fix the rows in the source \
             and run `repoctl live sync` again):\n{}",
            report::refusals_text(refusals).trim_end()
        ),
    }
}

fn outcome_text(o: &BatchOutcome, secs: f64) -> String {
    format!(
        "applied {} change(s): {} row(s) upserted, {} deleted{} in {:.2}s ({:.0} changes/s)",
        o.changes,
        o.upserts(),
        o.deletes(),
        if o.converted > 0 {
            format!(", {} with converted values", o.converted)
        } else {
            String::new()
        },
        secs,
        if secs > 0.0 {
            o.changes as f64 / secs
        } else {
            0.0
        }
    )
}

fn sync(a: SyncArgs, secrets: &mut Secrets) -> Result<u8, Failure> {
    let from = Endpoint::parse(&a.db.from, secrets)?;
    let to = Endpoint::parse(&a.db.to, secrets)?;
    let mut src = open_source(&from, secrets)?;
    if !capture::installed(&mut src)?.capturing() {
        return Err(not_started(&from));
    }
    let mut dst = DbConn::open(&to, Role::Write, secrets)?;
    let batch = a.db.batch_size as usize;
    let every = Duration::from_secs_f64(a.progress_every.clamp(0.0, 3600.0));
    let interval = Duration::from_secs_f64(a.interval.clamp(0.01, 3600.0));
    let mut last_line = Instant::now() - every;
    loop {
        let round = Instant::now();
        let o = match catch_up(&mut src, &mut dst, &from, batch, false) {
            Ok(Ok(o)) => o,
            Ok(Err(refusals)) => return Err(refusal_failure(&refusals)),
            // A cutover that finished meanwhile dropped the change table.
            Err(e) if a.follow && !capture::installed(&mut src)?.capturing() => {
                let _ = e;
                println!("the migration was cut over: nothing left to follow");
                return Ok(exit::OK);
            }
            Err(e) => return Err(e),
        };
        let secs = round.elapsed().as_secs_f64();
        let (pending, behind) = replay::lag(&mut src)?;
        if !a.follow || o.changes > 0 || last_line.elapsed() >= every {
            println!(
                "{} — lag: {pending} change(s) pending, {behind:.1}s behind",
                outcome_text(&o, secs)
            );
            last_line = Instant::now();
        }
        if !a.follow {
            return Ok(exit::OK);
        }
        if pending < batch as u64 {
            std::thread::sleep(interval);
        }
    }
}

fn status(a: SourceArgs, secrets: &mut Secrets) -> Result<u8, Failure> {
    let from = Endpoint::parse(&a.from, secrets)?;
    let mut src = DbConn::open(&from, Role::Read, secrets)?;
    let there = capture::installed(&mut src)?;
    println!("{}", from.display());
    println!(
        "  change capture: {}",
        if there.capturing() { "on" } else { "off" }
    );
    if there.capturing() {
        let (pending, behind) = replay::lag(&mut src)?;
        println!("  lag: {pending} change(s) pending, {behind:.1}s behind");
    }
    println!(
        "  writes: {}",
        if there.paused() {
            "paused (maintenance flag set)"
        } else {
            "allowed"
        }
    );
    Ok(exit::OK)
}

fn cutover(a: CutoverArgs, secrets: &mut Secrets) -> Result<u8, Failure> {
    let started = Instant::now();
    let from = Endpoint::parse(&a.db.from, secrets)?;
    let to = Endpoint::parse(&a.db.to, secrets)?;
    let mut src = open_source(&from, secrets)?;
    let there = capture::installed(&mut src)?;
    if !there.capturing() {
        return Err(not_started(&from));
    }
    let mut dst = DbConn::open(&to, Role::Write, secrets)?;
    let batch = a.db.batch_size as usize;
    let header = format!(
        "repoctl live cutover: {} → {}",
        from.display(),
        to.display()
    );
    println!("{header}");

    // 1. Catch up while the application still writes: the pause only covers the rest.
    let pre = Instant::now();
    let before = match catch_up(&mut src, &mut dst, &from, batch, false)? {
        Ok(o) => o,
        Err(refusals) => return Err(refusal_failure(&refusals)),
    };
    println!(
        "catch-up before the pause: {}",
        outcome_text(&before, pre.elapsed().as_secs_f64())
    );

    // 2. The pause: from setting the flag to the target being ready.
    let pause_started = Instant::now();
    capture::install_pause(&mut src)?;
    let flag_set = pause_started.elapsed();
    println!(
        "writes paused on {} (the application gets Unavailable {{ reason: Maintenance }})",
        from.display()
    );
    let inner = paused_steps(
        &mut src,
        &mut dst,
        &from,
        &to,
        secrets,
        batch,
        a.no_progress,
    );
    let Paused {
        last,
        replay_secs,
        rows,
        verify_secs,
        sequences,
    } = match inner {
        Ok(Ok(x)) => x,
        Ok(Err(why)) | Err(Failure { message: why, .. }) => {
            capture::remove_pause(&mut src).map_err(|e| {
                Failure::other(format!(
                    "cutover abandoned ({why}), and lifting the pause failed: {e}; writes to {}                      stay refused until `repoctl live cutover` succeeds or `repoctl live abort                      --from …` removes the flag",
                    from.display()
                ))
            })?;
            println!(
                "\ncutover abandoned: {why}\nwrites resumed on {} after {:.2}s; the application \
                 goes on with it, nothing was lost; change capture stays on (run `repoctl live \
                 sync`, then try the cutover again)",
                from.display(),
                pause_started.elapsed().as_secs_f64()
            );
            return Ok(exit::MISMATCH);
        }
    };
    let pause = pause_started.elapsed();
    // The flag stays set on the old database; capture is no longer needed.
    capture::remove_capture(&mut src)?;
    print!("\nverification:\n{}", report::verify_table(&rows));
    let seq_text: Vec<String> = sequences
        .iter()
        .map(|(t, v)| format!("{t} → {v}"))
        .collect();
    println!("sequences reset (next id): {}", seq_text.join(", "));
    println!(
        "final catch-up in the pause: {}",
        outcome_text(&last, replay_secs)
    );
    println!(
        "\nwrite pause: {:.2}s (flag set in {:.2}s, last changes {:.2}s, verification {:.2}s); \
         total {:.2}s",
        pause.as_secs_f64(),
        flag_set.as_secs_f64(),
        replay_secs,
        verify_secs,
        started.elapsed().as_secs_f64()
    );
    println!(
        "switch DATABASE_URL now: {} is complete and verified. Writes to {} stay refused with \
         Unavailable {{ reason: Maintenance }} (remove the flag with `repoctl live abort --from …` \
         only to use that database again)",
        to.display(),
        from.display()
    );
    if let Some(path) = a.report {
        let json = serde_json::json!({
            "command": "live cutover",
            "source": from.display(),
            "target": to.display(),
            "pause_seconds": pause.as_secs_f64(),
            "flag_seconds": flag_set.as_secs_f64(),
            "replay_in_pause_seconds": replay_secs,
            "verification_seconds": verify_secs,
            "catch_up_before_pause": {"changes": before.changes, "upserted": before.upserts(), "deleted": before.deletes()},
            "catch_up_in_pause": {"changes": last.changes, "upserted": last.upserts(), "deleted": last.deletes()},
            "verification": rows,
            "sequences": sequences,
            "seconds": started.elapsed().as_secs_f64(),
        });
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&json).map_err(|e| Failure::other(e.to_string()))?,
        )?;
    }
    Ok(exit::OK)
}

/// What happened inside the pause.
struct Paused {
    last: BatchOutcome,
    replay_secs: f64,
    rows: Vec<crate::report::VerifyRow>,
    verify_secs: f64,
    sequences: std::collections::BTreeMap<String, i64>,
}

/// Inside the pause: the last changes, the verification, the sequences. `Ok(Err(why))`
/// when the target must not be used.
fn paused_steps(
    src: &mut DbConn,
    dst: &mut DbConn,
    from: &Endpoint,
    to: &Endpoint,
    secrets: &Secrets,
    batch: usize,
    no_progress: bool,
) -> Result<Result<Paused, String>, Failure> {
    let replay_started = Instant::now();
    let last = match catch_up(src, dst, from, batch, true)? {
        Ok(o) => o,
        Err(refusals) => return Ok(Err(refusal_failure(&refusals).message)),
    };
    let replay_secs = replay_started.elapsed().as_secs_f64();
    let verify_started = Instant::now();
    let progress = Progress::new(Mode::for_stderr(
        !no_progress,
        crate::progress::DEFAULT_EVERY,
    ));
    let rows = verify::verify(
        from,
        to,
        secrets,
        &Table::ALL,
        batch.max(1000),
        &Default::default(),
        &progress,
    )?;
    drop(progress);
    if rows.iter().any(|r| !r.equal) {
        return Ok(Err(format!(
            "the verification found a difference:\n{}",
            report::verify_table(&rows).trim_end()
        )));
    }
    let verify_secs = verify_started.elapsed().as_secs_f64();
    let mut sequences = std::collections::BTreeMap::new();
    for t in Table::ALL {
        if t.spec().has_sequence {
            let mark = src.sequence_mark(t)?;
            sequences.insert(t.name().to_string(), dst.reset_sequence(t, mark)? + 1);
        }
    }
    Ok(Ok(Paused {
        last,
        replay_secs,
        rows,
        verify_secs,
        sequences,
    }))
}

fn abort(a: SourceArgs, secrets: &mut Secrets) -> Result<u8, Failure> {
    let from = Endpoint::parse(&a.from, secrets)?;
    let mut src = open_source(&from, secrets)?;
    let removed = capture::remove_all(&mut src)?;
    if removed.is_empty() {
        println!("{}: nothing of repoctl's was installed", from.display());
        return Ok(exit::OK);
    }
    println!(
        "{}: removed {} capture trigger(s){}{}; writes {}",
        from.display(),
        removed.capture_triggers.len(),
        if removed.changes_table {
            format!(", the change table {}", capture::CHANGES)
        } else {
            String::new()
        },
        if removed.paused() {
            format!(", {} pause trigger(s)", removed.pause_triggers.len())
        } else {
            String::new()
        },
        if removed.paused() {
            "resumed"
        } else {
            "were not paused"
        }
    );
    Ok(exit::OK)
}
