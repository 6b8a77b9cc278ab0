//! `poolside run`: runs a command with poolside preloaded and passes its exit status
//! through (a death by signal N becomes 128 + N, as shells report it).

pub mod environment;
pub mod locate;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's PID while it runs, for the signal forwarder (0 = none).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is our child.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The directory of the running executable.
pub fn exe_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate poolside itself: {e}"))?;
    Ok(exe.parent().map(PathBuf::from).unwrap_or_default())
}

/// The exit code for a child's status.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// Runs `cmd` (program and arguments) and returns its exit code.
pub fn run(conf: Option<&str>, cmd: &[String]) -> Result<i32, String> {
    let Some((program, args)) = cmd.split_first() else {
        return Err(
            "no command given (usage: poolside run [--conf K:V,...] -- CMD ARGS...)".into(),
        );
    };
    let places = locate::Places::of_this_build(&exe_dir()?);
    let env = |k: &str| std::env::var(k).ok();
    let lib = locate::host_lib(&places, env("POOLSIDE_LIB").as_deref())?;
    let hook = locate::python_hook(&places, env("POOLSIDE_PYTHON_HOOK").as_deref());
    let cuda = locate::cuda_lib(&places);
    let add = environment::additions(env, &lib, conf, hook.as_deref(), cuda.as_deref());
    let mut command = Command::new(program);
    command.args(args).envs(add.vars);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    CHILD.store(child.id() as i32, Ordering::Relaxed);
    // After the spawn, so that the child does not inherit the ignored dispositions.
    // Terminal signals reach the whole process group, so we only outlive them; others
    // sent to us are passed on.
    // SAFETY: the handler only calls kill, which is async-signal-safe; SIG_IGN is valid.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, forward as *const () as libc::sighandler_t);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    CHILD.store(0, Ordering::Relaxed);
    Ok(exit_code(status))
}
