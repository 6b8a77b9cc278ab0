//! C and C++ programs load libpoolside_cuda.so with dlopen and call it by name, as
//! PyTorch does, under POOLSIDE_CUDA_DRIVER=sim. Skips (saying why) without a compiler.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The library cargo built with this test: target/<profile>/deps/libpoolside_cuda.so
/// (`cargo test` leaves it there), else the copy `cargo build` puts in target/<profile>.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let fresh = deps.join("libpoolside_cuda.so");
    if fresh.exists() {
        return fresh;
    }
    deps.parent().unwrap().join("libpoolside_cuda.so")
}

fn compile(compiler: &str, src: &str, extra: &[&str]) -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!(
        "poolside-{}-{}",
        std::process::id(),
        src.replace('.', "_")
    ));
    let st = Command::new(compiler)
        .arg(here.join("tests/c").join(src))
        .arg("-I")
        .arg(here.join("../include"))
        .arg("-o")
        .arg(&out)
        .args(extra)
        .arg("-ldl")
        .status();
    match st {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("{compiler} failed on {src}: {s}"),
        Err(e) => {
            println!("skipped: {compiler} not available ({e})");
            None
        }
    }
}

fn run(prog: &Path) -> String {
    let lib = library();
    assert!(lib.exists(), "{} not built", lib.display());
    let out = Command::new(prog)
        .arg(&lib)
        .env("POOLSIDE_CUDA_DRIVER", "sim")
        .env("POOLSIDE_CONF", "device_capacity_mb:64,stats:off")
        .env_remove("PYTORCH_CUDA_ALLOC_CONF")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{}: {text}", prog.display());
    text
}

#[test]
fn c_program_calls_every_export_by_name() {
    let Some(prog) = compile("cc", "dlopen_sim.c", &["-std=c11"]) else {
        return;
    };
    assert!(run(&prog).contains("dlopen_sim: ok"));
    std::fs::remove_file(prog).ok();
}

#[test]
fn out_of_memory_reaches_cpp_as_an_exception() {
    let Some(prog) = compile("c++", "oom_throw.cpp", &["-std=c++17"]) else {
        return;
    };
    let text = run(&prog);
    assert!(
        text.contains("oom_throw: ok: CUDA out of memory."),
        "{text}"
    );
    assert!(text.contains("invalid device 9"), "{text}");
    std::fs::remove_file(prog).ok();
}

#[test]
fn cuda_graph_hooks_take_a_real_std_function_and_throw_towards_the_caller() {
    let Some(prog) = compile("c++", "graph_hooks.cpp", &["-std=c++17"]) else {
        return;
    };
    let text = run(&prog);
    assert!(text.contains("graph_hooks: ok"), "{text}");
    std::fs::remove_file(prog).ok();
}
