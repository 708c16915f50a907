//! The box itself: uptime, load, CPU, memory, SoC temperature and Raspberry Pi throttling, read
//! from `/proc` and `/sys` (no extra package on Raspberry Pi OS, Debian, Yocto or L4T).
//!
//! - temperature: every `/sys/class/thermal/thermal_zone*/` (`type`, `temp` in m°C); the SoC
//!   figure is the hottest zone. A board without a zone (this x86 VM, most VMs) reports `null`.
//! - throttling: the Raspberry Pi kernel's firmware driver publishes the firmware's
//!   `get_throttled` word in sysfs (`/sys/devices/platform/soc/soc:firmware/get_throttled`, the
//!   same bits `vcgencmd get_throttled` prints, without needing vcgencmd); `null` elsewhere.
//! - disk errors: ext4's `errors_count` of the clip filesystem (`/sys/fs/ext4/{device}/`).
//! - CPU: `/proc/stat` (the box) and `/proc/self/stat` (the daemon), as shares of the interval
//!   between two samples; memory from `/proc/meminfo` and `/proc/self/status` (VmRSS).
//!
//! [`SysReader`] takes the sysfs root as a path so tests give it a directory of fake zones and
//! flags; `/proc` is always the real one. [`alerts`] turns samples into raised/cleared alerts.
//! Reads files only (no thread; one lock, for where `get_throttled` was found); the monitor task
//! calls it every few seconds.

pub mod alerts;

use serde::Serialize;
use std::path::{Path, PathBuf};

/// One thermal zone.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThermalZone {
    /// `thermal_zoneN`.
    pub zone: String,
    /// Its `type` (`cpu-thermal`, `CPU-therm`, `x86_pkg_temp`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Degrees Celsius.
    pub temp_c: f64,
}

/// The Raspberry Pi firmware's `get_throttled` word, decoded.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Throttled {
    /// The raw word (`0x50005`).
    pub raw: u32,
    /// Bit 0: the supply is under-voltage now.
    pub under_voltage: bool,
    /// Bit 1: the ARM frequency is capped now.
    pub freq_capped: bool,
    /// Bit 2: the SoC is throttled now.
    pub throttled: bool,
    /// Bit 3: the soft temperature limit is active now.
    pub soft_temp_limit: bool,
    /// Bits 16–19: any of these has happened since boot.
    pub occurred_since_boot: bool,
}

impl Throttled {
    /// From the word.
    pub fn from_raw(raw: u32) -> Throttled {
        Throttled {
            raw,
            under_voltage: raw & 1 != 0,
            freq_capped: raw & 2 != 0,
            throttled: raw & 4 != 0,
            soft_temp_limit: raw & 8 != 0,
            occurred_since_boot: raw & 0xf_0000 != 0,
        }
    }

    /// Any of the "now" bits.
    pub fn active(&self) -> bool {
        self.raw & 0xf != 0
    }
}

/// Parse `get_throttled`'s text: hex with or without `0x`, or `throttled=0x…` (vcgencmd's form).
pub fn parse_throttled(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("throttled=").unwrap_or(t);
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

/// CPU time counters at one instant (clock ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// The whole box: all jiffies, and the idle + iowait ones.
    pub total: u64,
    pub idle: u64,
    /// The daemon: user + system.
    pub process: u64,
}

impl CpuTimes {
    /// (box busy %, daemon %) over the interval since `before`: shares of all CPUs' time, so 100
    /// is every core busy. `None` without a tick in between.
    pub fn usage_since(&self, before: &CpuTimes) -> Option<(f64, f64)> {
        let total = self.total.checked_sub(before.total).filter(|t| *t > 0)? as f64;
        let idle = self.idle.saturating_sub(before.idle) as f64;
        let process = self.process.saturating_sub(before.process) as f64;
        let busy = ((total - idle) / total * 100.0).clamp(0.0, 100.0);
        // The two files are read a moment apart and counted differently (per-task ticks vs the
        // CPUs' own): over a short interval the daemon's count can come out above the box's.
        Some((busy, (process / total * 100.0).clamp(0.0, busy)))
    }
}

/// Memory figures in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// The daemon's resident set.
    pub rss_bytes: u64,
}

/// Reads the box's figures.
#[derive(Debug, Clone)]
pub struct SysReader {
    sys: PathBuf,
    proc: PathBuf,
    /// Where `get_throttled` is: looked for once, not at every sample.
    throttled_at: std::sync::Arc<std::sync::Mutex<ThrottledAt>>,
}

/// Where the firmware's `get_throttled` was found, or when it was last looked for in vain.
#[derive(Debug, Default)]
enum ThrottledAt {
    #[default]
    Unknown,
    Found(PathBuf),
    Absent(std::time::Instant),
}

/// How long a fruitless search for `get_throttled` stands (a board without the firmware driver
/// has none; a driver loaded late is found within this).
const THROTTLED_LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(300);

impl Default for SysReader {
    fn default() -> Self {
        SysReader::new(None)
    }
}

impl SysReader {
    /// Over `/sys`, or over `sysfs_root` (tests).
    pub fn new(sysfs_root: Option<&Path>) -> SysReader {
        SysReader {
            sys: sysfs_root.map_or_else(|| PathBuf::from("/sys"), Path::to_path_buf),
            proc: "/proc".into(),
            throttled_at: Default::default(),
        }
    }

    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// Thermal zones with a readable temperature, in zone order.
    pub fn thermal_zones(&self) -> Vec<ThermalZone> {
        let Ok(dir) = std::fs::read_dir(self.sys.join("class/thermal")) else { return Vec::new() };
        let mut zones: Vec<(u32, ThermalZone)> = dir
            .flatten()
            .filter_map(|e| {
                let zone = e.file_name().to_string_lossy().into_owned();
                let n: u32 = zone.strip_prefix("thermal_zone")?.parse().ok()?;
                let milli: i64 = self.read(&e.path().join("temp"))?.trim().parse().ok()?;
                let kind = self.read(&e.path().join("type")).map(|t| t.trim().to_string()).unwrap_or_default();
                // A sensor that is absent reads as a huge negative number on some boards.
                let temp_c = milli as f64 / 1000.0;
                (-60.0..=200.0).contains(&temp_c).then_some((n, ThermalZone { zone, kind, temp_c }))
            })
            .collect();
        zones.sort_by_key(|(n, _)| *n);
        zones.into_iter().map(|(_, z)| z).collect()
    }

    /// The Raspberry Pi firmware's throttling word, where the kernel publishes it.
    /// (The search under `/sys/devices/platform` runs once; a fruitless one again after
    /// [`THROTTLED_LOOK_AGAIN`]; a found file that goes away is looked for again.)
    pub fn throttled(&self) -> Option<Throttled> {
        let mut at = self.throttled_at.lock().unwrap_or_else(|e| e.into_inner());
        let path = match &*at {
            ThrottledAt::Found(p) => p.clone(),
            ThrottledAt::Absent(when) if when.elapsed() < THROTTLED_LOOK_AGAIN => return None,
            _ => {
                let platform = self.sys.join("devices/platform");
                let known = platform.join("soc/soc:firmware/get_throttled");
                let found = if known.exists() { Some(known) } else { find_named(&platform, "get_throttled", 3) };
                let Some(p) = found else {
                    *at = ThrottledAt::Absent(std::time::Instant::now());
                    return None;
                };
                *at = ThrottledAt::Found(p.clone());
                p
            }
        };
        let Some(text) = self.read(&path) else {
            *at = ThrottledAt::Unknown;
            return None;
        };
        drop(at);
        Some(Throttled::from_raw(parse_throttled(&text)?))
    }

    /// The box's and the daemon's CPU counters now.
    pub fn cpu_times(&self) -> Option<CpuTimes> {
        let stat = self.read(&self.proc.join("stat"))?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        let own = self.read(&self.proc.join("self/stat"))?;
        // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let rest = &own[own.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let process = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(CpuTimes { total, idle, process })
    }

    /// Memory now.
    pub fn memory(&self) -> Memory {
        let kib = |text: &str, key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |k| k * 1024)
        };
        let info = self.read(&self.proc.join("meminfo")).unwrap_or_default();
        let status = self.read(&self.proc.join("self/status")).unwrap_or_default();
        Memory {
            total_bytes: kib(&info, "MemTotal:"),
            available_bytes: kib(&info, "MemAvailable:"),
            rss_bytes: kib(&status, "VmRSS:"),
        }
    }

    /// Errors the kernel counted on the filesystem holding `path` since it was made: ext4's
    /// `/sys/fs/ext4/{device}/errors_count` (the device found from `path`'s `st_dev` through
    /// `/sys/dev/block/MAJOR:MINOR`). `None` for another filesystem (tmpfs, overlay, vfat).
    pub fn fs_errors(&self, path: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let mut p = path.to_path_buf();
        while !p.exists() {
            if !p.pop() {
                return None;
            }
        }
        let dev = std::fs::metadata(if p.as_os_str().is_empty() { Path::new(".") } else { &p }).ok()?.dev();
        let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let link = std::fs::read_link(self.sys.join(format!("dev/block/{major}:{minor}"))).ok()?;
        let name = link.file_name()?.to_str()?.to_string();
        self.read(&self.sys.join("fs/ext4").join(name).join("errors_count"))?.trim().parse().ok()
    }

    /// Seconds since boot.
    pub fn uptime_s(&self) -> Option<f64> {
        self.read(&self.proc.join("uptime"))?.split_whitespace().next()?.parse().ok()
    }

    /// The 1, 5 and 15 minute load averages.
    pub fn load(&self) -> Option<[f64; 3]> {
        let text = self.read(&self.proc.join("loadavg"))?;
        let v: Vec<f64> = text.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect();
        Some([*v.first()?, *v.get(1)?, *v.get(2)?])
    }
}

/// The first file called `name` under `dir`, at most `depth` directories down (sysfs links are
/// not followed: the platform tree has real directories for devices).
fn find_named(dir: &Path, name: &str, depth: u32) -> Option<PathBuf> {
    let here = dir.join(name);
    if here.is_file() {
        return Some(here);
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    subdirs.iter().find_map(|d| find_named(d, name, depth - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(root: &Path, n: u32, kind: &str, milli: &str) {
        let d = root.join(format!("class/thermal/thermal_zone{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
        std::fs::write(d.join("temp"), format!("{milli}\n")).unwrap();
    }

    #[test]
    fn zones_are_read_in_order_and_bad_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        zone(dir.path(), 10, "gpu-thermal", "51000");
        zone(dir.path(), 2, "cpu-thermal", "48312");
        zone(dir.path(), 3, "absent", "-274000");
        zone(dir.path(), 4, "garbage", "n/a");
        let r = SysReader::new(Some(dir.path()));
        let z = r.thermal_zones();
        assert_eq!(z.iter().map(|z| z.zone.as_str()).collect::<Vec<_>>(), ["thermal_zone2", "thermal_zone10"]);
        assert_eq!(z[0].kind, "cpu-thermal");
        assert!((z[0].temp_c - 48.312).abs() < 1e-9);
        assert!(SysReader::new(Some(&dir.path().join("none"))).thermal_zones().is_empty());
    }

    #[test]
    fn throttled_is_found_and_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let r = SysReader::new(Some(dir.path()));
        assert_eq!(r.throttled(), None, "no firmware driver: null");
        // A Pi 5 puts the firmware node elsewhere: found by name.
        let d = dir.path().join("devices/platform/axi/axi:firmware");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("get_throttled"), "50005\n").unwrap();
        assert_eq!(r.throttled(), None, "a fruitless search stands for a while (not one per sample)");
        let r = SysReader::new(Some(dir.path()));
        let t = r.throttled().unwrap();
        assert!(t.under_voltage && t.throttled && !t.freq_capped && !t.soft_temp_limit && t.occurred_since_boot);
        assert!(t.active());
        std::fs::write(d.join("get_throttled"), "50000\n").unwrap();
        let t = r.throttled().unwrap();
        assert!(!t.active() && t.occurred_since_boot);
        // Gone (the driver unloaded): null, then looked for again and found at its usual place.
        std::fs::remove_dir_all(dir.path().join("devices/platform/axi")).unwrap();
        assert_eq!(r.throttled(), None);
        let d = dir.path().join("devices/platform/soc/soc:firmware");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("get_throttled"), "0\n").unwrap();
        assert!(!r.throttled().unwrap().occurred_since_boot);
        assert_eq!(parse_throttled("throttled=0x80008"), Some(0x80008));
        assert_eq!(parse_throttled("0x0"), Some(0));
        assert_eq!(parse_throttled("zz"), None);
    }

    #[test]
    fn ext4_errors_of_the_storage_filesystem() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let storage = dir.path().join("storage/not-yet-made");
        let r = SysReader::new(Some(&sys));
        assert_eq!(r.fs_errors(&storage), None, "no sysfs entry: unknown, not 0");
        let dev = std::fs::metadata(dir.path()).unwrap().dev();
        let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        std::fs::create_dir_all(sys.join("devices/platform/mmc/block/mmcblk0/mmcblk0p2")).unwrap();
        std::fs::create_dir_all(sys.join("dev/block")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/platform/mmc/block/mmcblk0/mmcblk0p2",
            sys.join(format!("dev/block/{major}:{minor}")),
        )
        .unwrap();
        assert_eq!(r.fs_errors(&storage), None, "not ext4");
        std::fs::create_dir_all(sys.join("fs/ext4/mmcblk0p2")).unwrap();
        std::fs::write(sys.join("fs/ext4/mmcblk0p2/errors_count"), "3\n").unwrap();
        assert_eq!(r.fs_errors(&storage), Some(3));
    }

    #[test]
    fn proc_figures_are_read_and_cpu_usage_is_a_share() {
        let r = SysReader::default();
        let a = r.cpu_times().expect("/proc/stat and /proc/self/stat");
        // Burn a little CPU so the daemon's share is above zero.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = r.cpu_times().unwrap();
        if let Some((cpu, own)) = b.usage_since(&a) {
            assert!((0.0..=100.0).contains(&cpu) && (0.0..=100.0).contains(&own) && own <= cpu + 1e-9, "{cpu} {own}");
        }
        let m = r.memory();
        assert!(m.total_bytes > 0 && m.available_bytes <= m.total_bytes && m.rss_bytes > 0, "{m:?}");
        assert!(r.uptime_s().unwrap() > 0.0);
        assert!(r.load().is_some());
        let before = CpuTimes { total: 1000, idle: 800, process: 10 };
        let after = CpuTimes { total: 1200, idle: 900, process: 30 };
        assert_eq!(after.usage_since(&before), Some((50.0, 10.0)));
        assert_eq!(before.usage_since(&before), None);
    }
}
