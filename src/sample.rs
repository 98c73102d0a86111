//! Resource sampling of a process (resident memory and CPU) with sysinfo, plus host facts.
//!
//! This module owns: [`Sampler`], a background thread that refreshes one pid every interval and
//! records [`Sample`]s on a clock that starts with the sampler; window selection for one question
//! ([`samples_for_window`]); the summary of a window ([`summarize`] → [`Usage`]); and the static
//! description of the machine ([`host_facts`] → [`HostFacts`]).
//!
//! CPU percentages come from sysinfo, which needs two refreshes to compute a rate: the sampler
//! refreshes once at start without recording, so every recorded sample's `cpu_percent` is the
//! mean over the interval that ends at its `t_s`.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate,
    RefreshKind, System,
};

/// Default sampling interval: 200 ms.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

/// One observation of the sampled process.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started (same clock as [`Sampler::now_s`]).
    pub t_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// CPU use over the interval ending at `t_s`, percent of one core (200 = two cores busy).
    pub cpu_percent: f32,
}

/// Summary of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Number of samples summarised (>= 1).
    pub n_samples: usize,
    /// Mean resident set size, bytes (rounded).
    pub rss_mean_bytes: u64,
    /// Largest resident set size, bytes.
    pub rss_peak_bytes: u64,
    /// Mean CPU use, percent of one core.
    pub cpu_mean_percent: f64,
}

/// This machine's host name (`sysinfo`'s, else `$HOSTNAME`, else `"localhost"`).
pub fn host_name() -> String {
    System::host_name()
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Static facts about the machine, recorded with each run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostFacts {
    /// CPU brand string (e.g. "AMD EPYC 7B13"), empty if unknown.
    pub cpu_model: String,
    /// Physical cores, `None` if the OS does not say.
    pub physical_cores: Option<usize>,
    /// Logical cores (hardware threads) seen by sysinfo.
    pub logical_cores: usize,
    /// Total RAM, bytes.
    pub ram_bytes: u64,
    /// Long OS name and version (e.g. "Linux (Debian GNU/Linux 12)"), empty if unknown.
    pub os: String,
    /// Kernel version (e.g. "6.1.0-26-amd64"), empty if unknown.
    pub kernel: String,
}

/// Background sampler of one process. Dropping it without [`Sampler::stop`] also stops the
/// thread (the channel disconnects) but discards the samples.
#[derive(Debug)]
pub struct Sampler {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop_tx: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Locks the sample buffer, recovering it if a holder panicked (samples are plain data).
fn lock(samples: &Mutex<Vec<Sample>>) -> MutexGuard<'_, Vec<Sample>> {
    samples
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sampler {
    /// Starts sampling `pid` every `interval` (use [`DEFAULT_INTERVAL`]) on a background thread.
    /// Only that process is refreshed (memory and CPU). The thread ends by itself when the
    /// process is gone (or a zombie); if sysinfo cannot initialise, it logs a warning and records
    /// nothing.
    pub fn start(pid: u32, interval: Duration) -> Sampler {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let buffer = Arc::clone(&samples);
        let spawned = std::thread::Builder::new()
            .name(format!("sampler-{pid}"))
            .spawn(move || sample_loop(Pid::from_u32(pid), interval, started, &buffer, &stop_rx));
        let handle = match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot spawn the sampler thread; no samples");
                None
            }
        };
        Sampler {
            started,
            samples,
            stop_tx: Some(stop_tx),
            handle,
        }
    }

    /// Seconds since the sampler started, on the clock of [`Sample::t_s`].
    pub fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Samples with `from_s <= t_s <= to_s` so far.
    pub fn samples_between(&self, from_s: f64, to_s: f64) -> Vec<Sample> {
        lock(&self.samples)
            .iter()
            .filter(|s| s.t_s >= from_s && s.t_s <= to_s)
            .copied()
            .collect()
    }

    /// Samples in the window, or else the single sample nearest to it (see
    /// [`samples_for_window`]).
    pub fn samples_for_window(&self, from_s: f64, to_s: f64) -> Vec<Sample> {
        samples_for_window(&lock(&self.samples), from_s, to_s)
    }

    /// All samples so far.
    pub fn snapshot(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }

    /// Stops the thread and returns every sample, in time order.
    pub fn stop(mut self) -> Vec<Sample> {
        self.shutdown();
        std::mem::take(&mut *lock(&self.samples))
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            // An error means the thread already ended (process gone): nothing to do.
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::warn!("sampler thread panicked");
            }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The sampler thread: prime the CPU counters, then record one sample per interval until told to
/// stop or the process disappears.
fn sample_loop(
    pid: Pid,
    interval: Duration,
    started: Instant,
    buffer: &Mutex<Vec<Sample>>,
    stop_rx: &mpsc::Receiver<()>,
) {
    let mut system = match System::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "sysinfo unavailable; no resource samples");
            return;
        }
    };
    if read_process(&mut system, pid).is_none() {
        tracing::debug!(pid = pid.as_u32(), "sampled process not found at start");
        return;
    }
    loop {
        match stop_rx.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some((rss_bytes, cpu_percent)) = read_process(&mut system, pid) else {
            tracing::debug!(pid = pid.as_u32(), "sampled process ended");
            return;
        };
        let t_s = started.elapsed().as_secs_f64();
        lock(buffer).push(Sample {
            t_s,
            rss_bytes,
            cpu_percent,
        });
    }
}

/// Refreshes `pid` (memory + CPU only) and reads (RSS bytes, CPU percent of one core); `None` if
/// the process is gone or a zombie.
fn read_process(system: &mut System, pid: Pid) -> Option<(u64, f32)> {
    let kind = ProcessRefreshKind::nothing().with_memory().with_cpu();
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
    let process = system.process(pid)?;
    match process.status() {
        ProcessStatus::Zombie | ProcessStatus::Dead => None,
        _ => Some((process.memory(), process.cpu_usage())),
    }
}

/// Samples with `from_s <= t_s <= to_s`; if there are none, the single sample nearest to the
/// window (distance to its nearer edge; on a tie the later one, whose CPU interval covers the
/// window's end). Empty only if `samples` is empty. Use it for a question shorter than one
/// sampling interval.
pub fn samples_for_window(samples: &[Sample], from_s: f64, to_s: f64) -> Vec<Sample> {
    let inside: Vec<Sample> = samples
        .iter()
        .filter(|s| s.t_s >= from_s && s.t_s <= to_s)
        .copied()
        .collect();
    if !inside.is_empty() {
        return inside;
    }
    let distance = |s: &Sample| {
        if s.t_s < from_s {
            from_s - s.t_s
        } else {
            s.t_s - to_s
        }
    };
    samples
        .iter()
        .copied()
        .min_by(|a, b| {
            distance(a)
                .total_cmp(&distance(b))
                .then(b.t_s.total_cmp(&a.t_s))
        })
        .into_iter()
        .collect()
}

/// Mean and peak RSS and mean CPU of `samples`; `None` if empty.
pub fn summarize(samples: &[Sample]) -> Option<Usage> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len();
    let rss_sum: u128 = samples.iter().map(|s| u128::from(s.rss_bytes)).sum();
    let cpu_sum: f64 = samples.iter().map(|s| f64::from(s.cpu_percent)).sum();
    Some(Usage {
        n_samples: n,
        rss_mean_bytes: u64::try_from((rss_sum + n as u128 / 2) / n as u128).unwrap_or(u64::MAX),
        rss_peak_bytes: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        cpu_mean_percent: cpu_sum / n as f64,
    })
}

/// Describes this machine: CPU model, core counts, RAM, OS and kernel. Fields sysinfo cannot
/// read are empty / `None` / 0.
pub fn host_facts() -> HostFacts {
    let refresh = RefreshKind::nothing()
        .with_cpu(CpuRefreshKind::nothing())
        .with_memory(MemoryRefreshKind::nothing().with_ram());
    let (cpu_model, logical_cores, ram_bytes) = match System::new_with_specifics(refresh) {
        Ok(sys) => (
            sys.cpus()
                .first()
                .map(|c| c.brand().trim().to_string())
                .unwrap_or_default(),
            sys.cpus().len(),
            sys.total_memory(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "sysinfo unavailable; host facts incomplete");
            (String::new(), 0, 0)
        }
    };
    let logical_cores = if logical_cores == 0 {
        std::thread::available_parallelism().map_or(0, |n| n.get())
    } else {
        logical_cores
    };
    HostFacts {
        cpu_model,
        physical_cores: System::physical_core_count().ok(),
        logical_cores,
        ram_bytes,
        os: System::long_os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn s(t_s: f64, rss_bytes: u64, cpu_percent: f32) -> Sample {
        Sample {
            t_s,
            rss_bytes,
            cpu_percent,
        }
    }

    #[test]
    fn summarize_means_and_peak() {
        assert_eq!(summarize(&[]), None);
        let u = summarize(&[s(0.2, 100, 50.0), s(0.4, 300, 150.0), s(0.6, 201, 100.0)])
            .expect("non-empty");
        assert_eq!(u.n_samples, 3);
        assert_eq!(u.rss_mean_bytes, 200);
        assert_eq!(u.rss_peak_bytes, 300);
        assert!((u.cpu_mean_percent - 100.0).abs() < 1e-9);
    }

    #[test]
    fn window_returns_inside_samples_or_nearest() {
        let all = [
            s(0.2, 1, 0.0),
            s(0.4, 2, 0.0),
            s(0.6, 3, 0.0),
            s(0.8, 4, 0.0),
        ];
        let inside = samples_for_window(&all, 0.3, 0.6);
        assert_eq!(
            inside.iter().map(|x| x.rss_bytes).collect::<Vec<_>>(),
            vec![2, 3]
        );
        // Short window between samples: nearest is 0.6 (0.05 after) not 0.4 (0.1 before).
        let near = samples_for_window(&all, 0.50, 0.55);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].rss_bytes, 3);
        // Equidistant: the later sample wins.
        let tie = samples_for_window(&all, 0.45, 0.55);
        assert_eq!(tie[0].rss_bytes, 3);
        // Past the end: the last one.
        assert_eq!(samples_for_window(&all, 5.0, 6.0)[0].rss_bytes, 4);
        assert!(samples_for_window(&[], 0.0, 1.0).is_empty());
    }

    #[test]
    fn samples_a_busy_child_and_stops_when_it_exits() {
        // `yes` keeps one core busy writing to /dev/null until killed.
        let mut child = Command::new("yes")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn yes");
        let interval = Duration::from_millis(100);
        let sampler = Sampler::start(child.id(), interval);
        std::thread::sleep(Duration::from_millis(1500));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let t_end = sampler.now_s();
        std::thread::sleep(Duration::from_millis(400));
        let after = sampler.snapshot().len();
        std::thread::sleep(Duration::from_millis(400));
        let samples = sampler.stop();
        assert_eq!(
            samples.len(),
            after,
            "sampler kept sampling after the child exited"
        );
        // ~1.5 s at 100 ms: loosely between 4 and 30 samples.
        assert!(
            (4..=30).contains(&samples.len()),
            "unexpected sample count {}",
            samples.len()
        );
        assert!(samples.iter().all(|x| x.rss_bytes > 0));
        assert!(samples.windows(2).all(|w| w[0].t_s < w[1].t_s));
        assert!(samples.iter().all(|x| x.t_s <= t_end + 0.5));
        let usage = summarize(&samples).expect("samples");
        assert!(
            usage.cpu_mean_percent > 20.0,
            "busy child should use CPU, got {}",
            usage.cpu_mean_percent
        );
    }

    #[test]
    fn samples_current_process_until_stopped() {
        let sampler = Sampler::start(std::process::id(), Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(600));
        let mid = sampler.now_s();
        let early = sampler.samples_between(0.0, mid);
        let samples = sampler.stop();
        assert!(samples.len() >= 3, "got {} samples", samples.len());
        assert!(early.len() <= samples.len());
        assert!(samples.iter().all(|x| x.rss_bytes > 1_000_000));
        // Every sample comes after the priming refresh: none at t = 0.
        assert!(samples[0].t_s > 0.0);
    }

    #[test]
    fn unknown_pid_yields_no_samples() {
        // pid_max on Linux is at most 2^22; this pid cannot exist.
        let sampler = Sampler::start(u32::MAX - 1, Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(100));
        assert!(sampler.stop().is_empty());
    }

    #[test]
    fn host_facts_are_plausible() {
        let h = host_facts();
        assert!(h.logical_cores >= 1);
        assert!(h.ram_bytes > 0);
        if let Some(p) = h.physical_cores {
            assert!(p >= 1 && p <= h.logical_cores);
        }
        assert!(!h.kernel.is_empty() || !cfg!(target_os = "linux"));
    }
}
