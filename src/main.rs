//! The `hindsight` command line: parses arguments and starts things; the work is in the library.

use clap::{Parser, Subcommand};
use hindsight::config::{self, Config, ConfigErrors};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A camera appliance that always remembers the last 30 seconds.
#[derive(Parser)]
#[command(name = "hindsight", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file (default: /etc/hindsight/hindsight.toml if present, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config.
    CheckConfig {
        /// The file to check.
        path: PathBuf,
    },
    /// Print the commented default config, or a board's.
    PrintConfig {
        /// Board name (rpi4, rpi5, rpi-zero2w, jetson-nano, jetson-orin-nx, jetson-orin-nano, x86-dev).
        #[arg(long)]
        board: Option<String>,
    },
    /// List V4L2 devices and the encoders GStreamer offers; suggest a board config. With
    /// `--url`: watch a network camera and print what it sends and a `[[camera]]` block.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A network camera to look at: rtsp://, rtsps://, or http(s):// (MJPEG).
        #[arg(long)]
        url: Option<String>,
        /// RTSP transport: tcp, udp or auto.
        #[arg(long, default_value = "tcp")]
        transport: String,
        /// Longest time to watch the camera, in seconds (it stops after three keyframes).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// rtsps://: accept the camera's self-signed certificate with this SHA-256 fingerprint
        /// (the error of a first try names it); the block to paste then pins it too.
        #[arg(long)]
        tls_fingerprint: Option<String>,
    },
    /// Manage bearer tokens for automation (`Authorization: Bearer TOKEN`); a running daemon
    /// notices changes without a restart.
    Token {
        #[command(subcommand)]
        action: TokenAction,
        /// Config file (default: /etc/hindsight/hindsight.toml if present, else built-in
        /// defaults); tokens live in its `http.state_dir`.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Capture frames from a V4L2 device and check them (driver bring-up, CI).
    #[command(hide = true)]
    CaptureCheck {
        #[arg(long, default_value = "/dev/video0")]
        device: String,
        #[arg(long, default_value = "YUYV")]
        format: String,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 480)]
        height: u32,
        #[arg(long, default_value_t = 30)]
        fps: u32,
        #[arg(long, default_value_t = 100)]
        frames: u64,
        /// Instead: run the capture stage and report the device vanishing and returning.
        #[arg(long)]
        unplug_drill: bool,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// Its name, `[A-Za-z0-9_.-]{1,64}`.
        name: String,
    },
    /// List tokens: name and creation time.
    List,
    /// Revoke a token.
    Revoke {
        /// Its name.
        name: String,
    },
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ConfigErrors> {
    match path {
        Some(p) => Config::load(&p),
        None if Path::new(config::DEFAULT_CONFIG_PATH).exists() => Config::load(Path::new(config::DEFAULT_CONFIG_PATH)),
        None => Ok(Config::builtin_default()),
    }
}

fn token(action: TokenAction, config: Option<PathBuf>) -> ExitCode {
    use hindsight::auth;
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => return config_errors(&e),
    };
    let dir = cfg.state_dir();
    // Not on the SD card in place of the missing storage disk (storage.require_mount).
    if !matches!(action, TokenAction::List) {
        if let Err(e) = hindsight::storage::Storage::new(&cfg.storage).check_state_dir(&dir) {
            eprintln!("{e}; tokens are kept in {} and were not changed", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let result = match action {
        TokenAction::Create { name } => auth::create_token(&dir, &name).map(|t| {
            eprintln!("token {name:?} created; it is shown only now. Use it as `Authorization: Bearer TOKEN`:");
            println!("{t}");
        }),
        TokenAction::List => auth::list_tokens(&dir).map(|list| {
            for t in list {
                let created = jiff::Timestamp::from_second(t.created_at).map(|t| t.to_string()).unwrap_or_default();
                println!("{}\t{created}", t.name);
            }
        }),
        TokenAction::Revoke { name } => auth::revoke_token(&dir, &name).map(|()| eprintln!("token {name:?} revoked")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code for configuration errors (systemd: RestartPreventExitStatus=2).
const EXIT_CONFIG: u8 = 2;

fn init_logging() {
    if std::env::var_os("JOURNAL_STREAM").is_some() && systemd::journal::JournalLog::init().is_ok() {
        let level = std::env::var("RUST_LOG")
            .ok()
            .and_then(|l| l.parse::<log::LevelFilter>().ok())
            .unwrap_or(log::LevelFilter::Info);
        log::set_max_level(level);
        return;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), each keeping freed
/// memory; with GStreamer's and tokio's threads that is tens of MiB on a 512 MB board. Two
/// arenas are plenty for a daemon whose hot paths do not allocate.
fn limit_malloc_arenas() {
    // SAFETY: called once at start, before any other thread exists; mallopt only sets a tunable.
    // A fixed mmap threshold (setting it turns off glibc's dynamic raise) returns big
    // short-lived blocks — raw frames — to the kernel when freed instead of keeping them on the
    // heap.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// No transparent huge pages for this process. x264 (and glibc for large blocks) ask for them
/// with `madvise(MADV_HUGEPAGE)`, and each one makes a whole 2 MiB resident where a frame
/// buffer needs ~1.6 MiB: on the bench camera (720p30 x264) that is 14 MiB of huge pages and
/// ~6 MiB of RSS for nothing a 512 MB board can spare (`scripts/bench`: VmRSS 61.6 → 55.2 MiB,
/// CPU unchanged within noise). The flag is per process, inherited by every thread GStreamer
/// starts, and shows as `THP_enabled: 0` in /proc/PID/status. A kernel without THP refuses it
/// (EINVAL): nothing to turn off then.
fn no_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments only; it changes a flag of this process.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        log::debug!("PR_SET_THP_DISABLE: {}", std::io::Error::last_os_error());
    }
}

fn config_errors(e: &ConfigErrors) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_CONFIG)
}

/// Continuous recording onto the root filesystem (a Pi's SD card) without
/// `storage.require_mount`: it writes all day, and a card wears out (`check-config` warns).
fn wear_warnings(c: &Config) -> Vec<String> {
    let on_card = !c.storage.require_mount && hindsight::storage::on_root_filesystem(&c.storage.path);
    c.cameras
        .iter()
        .enumerate()
        .filter(|(_, cam)| on_card && cam.continuous.as_ref().is_some_and(|k| k.enabled))
        .map(|(i, cam)| {
            format!(
                "camera[{i}].continuous: camera {} records all the time to {}, which is on the root filesystem \
                 (on a Raspberry Pi the SD card, which wears out): put storage.path on a USB disk or SSD and set \
                 storage.require_mount = true",
                cam.id,
                c.storage.path.display()
            )
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            init_logging();
            limit_malloc_arenas();
            no_transparent_huge_pages();
            let cfg = match load_config(config) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("{e}");
                    return config_errors(&e);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(hindsight::daemon::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{}", hindsight::status::error_chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(c) => {
                for w in wear_warnings(&c) {
                    eprintln!("warning: {w}");
                }
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => config_errors(&e),
        },
        Command::PrintConfig { board } => match board {
            None => {
                print!("{}", config::DEFAULT_CONFIG_TOML);
                ExitCode::SUCCESS
            }
            Some(b) => match config::board_toml(&b) {
                Some(t) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                None => {
                    let known: Vec<&str> = config::BOARDS.iter().map(|(n, _)| *n).collect();
                    eprintln!("unknown board {b:?} (known: {})", known.join(", "));
                    ExitCode::from(EXIT_CONFIG)
                }
            },
        },
        Command::Probe { json, url: Some(url), transport, seconds, tls_fingerprint } => {
            probe_url(&url, &transport, seconds, tls_fingerprint.as_deref(), json)
        }
        Command::Probe { json, .. } => {
            let p = hindsight::probe::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
            } else {
                println!("V4L2 devices:");
                if p.devices.is_empty() {
                    println!("  (none)");
                }
                for d in &p.devices {
                    println!("  {} — {} ({})", d.path, d.card, d.driver);
                    for f in &d.formats {
                        println!("      {f}");
                    }
                }
                println!(
                    "H.264 encoders: {}",
                    if p.h264_encoders.is_empty() { "(none)".into() } else { p.h264_encoders.join(", ") }
                );
                println!(
                    "JPEG encoders:  {}",
                    if p.jpeg_encoders.is_empty() { "(none)".into() } else { p.jpeg_encoders.join(", ") }
                );
                if p.missing.is_empty() {
                    println!("Other elements: all {} present", hindsight::probe::NEEDED.len());
                }
                for n in &p.missing {
                    println!("MISSING:        {} (for {}; package {})", n.element, n.needed_for, n.package);
                }
                println!("ALSA capture devices (audio = {{ kind = \"alsa\", device = ... }}):");
                if p.audio_devices.is_empty() {
                    println!("  (none)");
                }
                for d in &p.audio_devices {
                    let list = |v: Vec<String>| if v.is_empty() { "?".to_string() } else { v.join(", ") };
                    println!("  {} = {} — {} / {}", d.stable, d.device, d.card, d.name);
                    println!(
                        "      rates {} Hz, channels {}, formats {}",
                        list(d.rates.iter().map(|r| r.to_string()).collect()),
                        list(d.channels.iter().map(|c| c.to_string()).collect()),
                        list(d.formats.clone())
                    );
                }
                if !p.alsasrc {
                    println!("MISSING:        alsasrc (for ALSA microphones; package gstreamer1.0-alsa)");
                }
                println!(
                    "AAC encoders:   {}",
                    if p.aac_encoders.is_empty() {
                        "(none: sound needs gstreamer1.0-libav or -plugins-bad)".into()
                    } else {
                        p.aac_encoders.join(", ")
                    }
                );
                if let Some(m) = &p.model {
                    println!("Board model:    {m}");
                }
                println!(
                    "Suggested:      board = \"{}\"   (hindsight print-config --board {})",
                    p.suggested_board, p.suggested_board
                );
            }
            ExitCode::SUCCESS
        }
        Command::Token { action, config } => token(action, config),
        Command::CaptureCheck { device, format, width, height, fps, frames, unplug_drill } => {
            if unplug_drill {
                init_logging();
                let ok = hindsight::capture::check::unplug_drill(
                    &device,
                    &format,
                    width,
                    height,
                    fps,
                    std::time::Duration::from_secs(60),
                );
                return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
            }
            let r = hindsight::capture::check::run(&device, &format, width, height, fps, frames);
            println!("CAPTURE-CHECK {}", serde_json::to_string(&r).unwrap_or_default());
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `hindsight probe --url`: exit 2 for a bad argument, 1 when the camera cannot be read.
fn probe_url(url: &str, transport: &str, seconds: f64, pinned: Option<&str>, json: bool) -> ExitCode {
    use hindsight::config::RtspTransport;
    let transport = match transport {
        "tcp" => RtspTransport::Tcp,
        "udp" => RtspTransport::Udp,
        "auto" => RtspTransport::Auto,
        other => {
            eprintln!("--transport: {other:?} is not one of tcp, udp, auto");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !(seconds > 0.0 && seconds <= 120.0) {
        eprintln!("--seconds: must be more than 0 and at most 120");
        return ExitCode::from(EXIT_CONFIG);
    }
    let pinned = match pinned.map(|p| (p, hindsight::config::fingerprint::parse(p))) {
        None => None,
        Some((_, Some(fp))) => Some(fp),
        Some((p, None)) => {
            eprintln!("--tls-fingerprint: {p:?} is not 32 bytes of hex (e.g. sha256:AB:CD:…)");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let shown = hindsight::redact::redact(url).into_owned();
    let watch = std::time::Duration::from_secs_f64(seconds);
    let p = match hindsight::probe::url::probe_url(url, transport, pinned.as_deref(), watch) {
        Ok(p) => p,
        Err(e) => {
            // Capture errors already name the (redacted) source.
            let e = hindsight::redact::redact(&e);
            if e.contains(&shown) {
                eprintln!("{e}");
            } else {
                eprintln!("{shown}: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".into());
    println!("Camera:   {} ({})", p.url, p.kind);
    println!(
        "Video:    {} {} {}, {}x{} at {} fps, {} frames seen",
        p.codec,
        opt(&p.profile),
        opt(&p.level),
        p.width,
        p.height,
        p.fps,
        p.frames
    );
    match p.gop_s {
        Some(g) => println!("GOP:      a keyframe every {g} s"),
        None => println!("GOP:      fewer than two keyframes seen (watch longer: --seconds)"),
    }
    if let Some(k) = p.bitrate_kbps {
        println!("Bitrate:  {k} kbit/s");
    }
    let audio: Vec<&String> = p.other_streams.iter().filter(|s| s.starts_with("audio")).collect();
    println!(
        "Audio:    {}",
        if audio.is_empty() {
            "none".to_string()
        } else {
            audio.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        }
    );
    println!("\nPaste into the config:\n\n{}", p.camera_block(url, transport, pinned.as_deref()));
    ExitCode::SUCCESS
}
