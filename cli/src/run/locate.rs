//! Where `poolside run` finds what it injects: libpoolside.so, the CUDA plugin and the
//! Python hook, relative to its own executable (cargo's target/<profile>/, or an install
//! prefix's bin/) unless the environment names them.

use std::path::{Path, PathBuf};

/// The host library's file name.
pub const LIB_NAME: &str = "libpoolside.so";
/// The CUDA plugin's file name.
pub const CUDA_LIB_NAME: &str = "libpoolside_cuda.so";

/// libpoolside.so: `$POOLSIDE_LIB`, else beside the executable, else `<exe_dir>/../lib`.
pub fn host_lib(exe_dir: &Path, env_lib: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = env_lib.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(absolute(p))
        } else {
            Err(format!("POOLSIDE_LIB={} is not a file", p.display()))
        };
    }
    let candidates = [
        exe_dir.join(LIB_NAME),
        exe_dir.join("../lib").join(LIB_NAME),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| absolute(p.clone()))
        .ok_or_else(|| {
            format!(
                "cannot find {LIB_NAME} (looked in {} and {}); build it with \
                 `cargo build -p poolside-capi` or set POOLSIDE_LIB",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// libpoolside_cuda.so beside the executable (or in `../lib`), if it exists.
pub fn cuda_lib(exe_dir: &Path) -> Option<PathBuf> {
    [
        exe_dir.join(CUDA_LIB_NAME),
        exe_dir.join("../lib").join(CUDA_LIB_NAME),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .map(absolute)
}

/// The directory of poolside's sitecustomize hook: `$POOLSIDE_PYTHON_HOOK`, else
/// `<exe_dir>/../share/poolside/python-hook`, else the repository's `python/hook` seen
/// from target/<profile>/; only a directory that exists.
pub fn python_hook(exe_dir: &Path, env_hook: Option<&str>) -> Option<PathBuf> {
    let env = env_hook.filter(|p| !p.is_empty()).map(PathBuf::from);
    env.into_iter()
        .chain([
            exe_dir.join("../share/poolside/python-hook"),
            exe_dir.join("../../python/hook"),
        ])
        .find(|p| p.is_dir())
        .map(absolute)
}

/// A clean absolute form of an existing path (falls back to the path as given).
fn absolute(p: PathBuf) -> PathBuf {
    std::fs::canonicalize(&p).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_files_beside_or_under_prefix() {
        let root = std::env::temp_dir().join(format!("poolside-locate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(root.join("lib")).unwrap();
        assert!(host_lib(&bin, None).unwrap_err().contains("POOLSIDE_LIB"));
        fs::write(root.join("lib").join(LIB_NAME), b"").unwrap();
        assert_eq!(
            host_lib(&bin, None).unwrap(),
            fs::canonicalize(root.join("lib").join(LIB_NAME)).unwrap()
        );
        fs::write(bin.join(LIB_NAME), b"").unwrap();
        assert_eq!(
            host_lib(&bin, None).unwrap(),
            fs::canonicalize(bin.join(LIB_NAME)).unwrap()
        );
        assert!(host_lib(&bin, Some("/nonexistent/x.so")).is_err());
        assert_eq!(cuda_lib(&bin), None);
        assert_eq!(python_hook(&bin, None), None);
        let hook = root.join("share/poolside/python-hook");
        fs::create_dir_all(&hook).unwrap();
        assert_eq!(
            python_hook(&bin, None),
            Some(fs::canonicalize(&hook).unwrap())
        );
        fs::remove_dir_all(root).unwrap();
    }
}
