//! The machine a run measured: cores, memory, OS, compiler, database versions.

use serde::Serialize;
use std::fs;

/// What the report states about the machine.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// Logical CPUs available to the process.
    pub(crate) cores: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub(crate) cpu: String,
    /// Total memory in MiB from `/proc/meminfo`.
    pub(crate) memory_mib: u64,
    /// `PRETTY_NAME` of `/etc/os-release` and the kernel release.
    pub(crate) os: String,
    /// The compiler that built the benchmark.
    pub(crate) rustc: String,
    /// Whether the benchmark was built with optimisations.
    pub(crate) optimized: bool,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started: other work on the machine
    /// shows here, and inflates latencies.
    pub(crate) load_at_start: String,
    /// `/proc/loadavg` when the run ended.
    pub(crate) load_at_end: String,
    /// Versions of the databases (filled in as the backends open).
    pub(crate) databases: Vec<DatabaseInfo>,
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One backend's database.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DatabaseInfo {
    /// `sqlite` or `postgres`.
    pub(crate) backend: String,
    /// Version reported by the database itself.
    pub(crate) version: String,
    /// Settings that shape the figures (durability, pool size).
    pub(crate) settings: String,
}

impl Machine {
    /// Reads what the operating system tells.
    pub(crate) fn detect() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_mib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        let pretty = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|o| {
                o.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_mib,
            os: format!("{pretty}, Linux {kernel} ({})", std::env::consts::ARCH),
            rustc: env!("REPO_BENCH_RUSTC_VERSION").to_owned(),
            optimized: !cfg!(debug_assertions),
            load_at_start: load_average(),
            load_at_end: String::new(),
            databases: Vec::new(),
        }
    }

    /// Markdown lines for the report header.
    pub(crate) fn markdown(&self) -> String {
        let mut out = format!(
            "- cores: {} ({})\n- memory: {:.1} GiB\n- OS: {}\n- compiler: {}{}\n\
             - load average (1/5/15 min) at start: {}, at end: {}\n",
            self.cores,
            self.cpu,
            self.memory_mib as f64 / 1024.0,
            self.os,
            self.rustc,
            if self.optimized {
                ", release build"
            } else {
                ", DEBUG build: figures are not representative"
            },
            self.load_at_start,
            self.load_at_end,
        );
        for db in &self.databases {
            out.push_str(&format!(
                "- {}: {} ({})\n",
                db.backend, db.version, db.settings
            ));
        }
        out
    }
}
