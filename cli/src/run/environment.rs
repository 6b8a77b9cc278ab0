//! The environment `poolside run` gives the command.

use std::path::Path;

/// Variables to set for the child, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Additions {
    pub vars: Vec<(String, String)>,
}

/// Appends `item` to a `sep`-separated list, or starts one.
pub fn append(existing: Option<&str>, item: &str, sep: char) -> String {
    match existing.filter(|e| !e.is_empty()) {
        Some(e) => format!("{e}{sep}{item}"),
        None => item.to_string(),
    }
}

/// Prepends `item` to a `sep`-separated list, or starts one.
pub fn prepend(existing: Option<&str>, item: &str, sep: char) -> String {
    match existing.filter(|e| !e.is_empty()) {
        Some(e) => format!("{item}{sep}{e}"),
        None => item.to_string(),
    }
}

/// The additions, given what the environment holds now (`get`).
///
/// LD_PRELOAD takes the library after any existing entries (ld.so accepts spaces or
/// colons; we use a colon), `--conf` becomes POOLSIDE_CONF, the Python hook goes first on
/// PYTHONPATH, and POOLSIDE_CUDA_LIB names the CUDA plugin.
pub fn additions(
    get: impl Fn(&str) -> Option<String>,
    lib: &Path,
    conf: Option<&str>,
    hook: Option<&Path>,
    cuda_lib: Option<&Path>,
) -> Additions {
    let mut vars = vec![(
        "LD_PRELOAD".to_string(),
        append(get("LD_PRELOAD").as_deref(), &lib.to_string_lossy(), ':'),
    )];
    if let Some(c) = conf {
        vars.push(("POOLSIDE_CONF".into(), c.to_string()));
    }
    if let Some(h) = hook {
        vars.push((
            "PYTHONPATH".into(),
            prepend(get("PYTHONPATH").as_deref(), &h.to_string_lossy(), ':'),
        ));
    }
    if let Some(c) = cuda_lib {
        vars.push(("POOLSIDE_CUDA_LIB".into(), c.to_string_lossy().into_owned()));
    }
    Additions { vars }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_variables() {
        let env = |k: &str| match k {
            "LD_PRELOAD" => Some("/a.so".to_string()),
            "PYTHONPATH" => Some("/p".to_string()),
            _ => None,
        };
        let a = additions(
            env,
            Path::new("/lib/libpoolside.so"),
            Some("stats:false"),
            Some(Path::new("/hook")),
            None,
        );
        assert_eq!(
            a.vars,
            [
                (
                    "LD_PRELOAD".to_string(),
                    "/a.so:/lib/libpoolside.so".to_string()
                ),
                ("POOLSIDE_CONF".to_string(), "stats:false".to_string()),
                ("PYTHONPATH".to_string(), "/hook:/p".to_string()),
            ]
        );
        let a = additions(
            |_| None,
            Path::new("/l.so"),
            None,
            None,
            Some(Path::new("/c.so")),
        );
        assert_eq!(
            a.vars,
            [
                ("LD_PRELOAD".to_string(), "/l.so".to_string()),
                ("POOLSIDE_CUDA_LIB".to_string(), "/c.so".to_string()),
            ]
        );
    }
}
