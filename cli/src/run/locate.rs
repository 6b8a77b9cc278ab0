//! Where `poolside run` and `poolside replay` find what they load: libpoolside.so, the CUDA
//! plugin and the Python hook. First where the environment says, then relative to the
//! executable (cargo's target/<profile>/, or an install prefix's bin/), then where the
//! binary was built: `cargo install --path cli` copies the binary to ~/.cargo/bin but builds
//! in the workspace's target directory, beside the libraries that
//! `cargo build --release -p poolside-capi -p poolside-cuda` puts there.

use std::path::{Path, PathBuf};

/// The host library's file name.
pub const LIB_NAME: &str = "libpoolside.so";
/// The CUDA plugin's file name.
pub const CUDA_LIB_NAME: &str = "libpoolside_cuda.so";

/// The directories searched, in order.
#[derive(Clone, Debug, Default)]
pub struct Places {
    /// For the two libraries.
    pub lib_dirs: Vec<PathBuf>,
    /// For the directory of the sitecustomize hook.
    pub hook_dirs: Vec<PathBuf>,
}

impl Places {
    /// Relative to the executable's directory only: beside it, or an install prefix
    /// (`<exe_dir>/../lib`, `<exe_dir>/../share/poolside/python-hook`), or the repository's
    /// `python/hook` seen from target/<profile>/.
    pub fn around(exe_dir: &Path) -> Places {
        Places {
            lib_dirs: vec![exe_dir.to_path_buf(), exe_dir.join("../lib")],
            hook_dirs: vec![
                exe_dir.join("../share/poolside/python-hook"),
                exe_dir.join("../../python/hook"),
            ],
        }
    }

    /// [`Places::around`], then the cargo profile directory and the checkout this binary
    /// was built from (recorded by build.rs; absent when built outside a checkout, as from
    /// crates.io, where they are only build directories that no longer exist).
    pub fn of_this_build(exe_dir: &Path) -> Places {
        let mut p = Places::around(exe_dir);
        p.lib_dirs
            .push(PathBuf::from(env!("POOLSIDE_BUILT_PROFILE_DIR")));
        p.hook_dirs
            .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/hook"));
        p
    }

    fn find_lib(&self, name: &str) -> Option<PathBuf> {
        self.lib_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(absolute)
    }

    fn looked_in(&self) -> String {
        let dirs: Vec<String> = self
            .lib_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(", ")
    }
}

/// libpoolside.so: `$POOLSIDE_LIB`, else the first of `places.lib_dirs` that holds it.
pub fn host_lib(places: &Places, env_lib: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = env_lib.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(absolute(p))
        } else {
            Err(format!("POOLSIDE_LIB={} is not a file", p.display()))
        };
    }
    places.find_lib(LIB_NAME).ok_or_else(|| {
        format!(
            "cannot find {LIB_NAME} (looked in {}); build it with \
             `cargo build --release -p poolside-capi` or set POOLSIDE_LIB",
            places.looked_in()
        )
    })
}

/// libpoolside_cuda.so in the first of `places.lib_dirs` that holds it, if any.
pub fn cuda_lib(places: &Places) -> Option<PathBuf> {
    places.find_lib(CUDA_LIB_NAME)
}

/// Where `cuda_lib` looked, for messages.
pub fn cuda_lib_looked_in(places: &Places) -> String {
    places.looked_in()
}

/// The directory of poolside's sitecustomize hook: `$POOLSIDE_PYTHON_HOOK`, else the first
/// of `places.hook_dirs`; only a directory that exists.
pub fn python_hook(places: &Places, env_hook: Option<&str>) -> Option<PathBuf> {
    let env = env_hook.filter(|p| !p.is_empty()).map(PathBuf::from);
    env.into_iter()
        .chain(places.hook_dirs.iter().cloned())
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
        let places = Places::around(&bin);
        assert!(host_lib(&places, None)
            .unwrap_err()
            .contains("POOLSIDE_LIB"));
        fs::write(root.join("lib").join(LIB_NAME), b"").unwrap();
        assert_eq!(
            host_lib(&places, None).unwrap(),
            fs::canonicalize(root.join("lib").join(LIB_NAME)).unwrap()
        );
        fs::write(bin.join(LIB_NAME), b"").unwrap();
        assert_eq!(
            host_lib(&places, None).unwrap(),
            fs::canonicalize(bin.join(LIB_NAME)).unwrap()
        );
        assert!(host_lib(&places, Some("/nonexistent/x.so")).is_err());
        assert_eq!(cuda_lib(&places), None);
        assert_eq!(python_hook(&places, None), None);
        let hook = root.join("share/poolside/python-hook");
        fs::create_dir_all(&hook).unwrap();
        assert_eq!(
            python_hook(&places, None),
            Some(fs::canonicalize(&hook).unwrap())
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_installed_binary_finds_the_build_it_came_from() {
        // A binary copied elsewhere (as `cargo install --path cli` does) finds the libraries
        // in the profile directory it was built in, and the checkout's hook.
        let elsewhere = std::env::temp_dir().join(format!("poolside-bin-{}", std::process::id()));
        fs::create_dir_all(&elsewhere).unwrap();
        let places = Places::of_this_build(&elsewhere);
        let built = PathBuf::from(env!("POOLSIDE_BUILT_PROFILE_DIR"));
        assert!(places.lib_dirs.contains(&built));
        // This test binary was built in that very directory's deps/.
        let exe = std::env::current_exe().unwrap();
        assert!(
            exe.starts_with(fs::canonicalize(&built).unwrap()),
            "{} is not under {}",
            exe.display(),
            built.display()
        );
        assert_eq!(
            python_hook(&places, None),
            Some(
                fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/hook"))
                    .unwrap()
            )
        );
        fs::remove_dir_all(elsewhere).unwrap();
    }
}
