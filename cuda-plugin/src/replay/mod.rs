//! `poolside replay SNAPSHOT.pickle`: runs the alloc/free sequence of a PyTorch memory
//! snapshot through the pool on the simulated driver, and sets what poolside did beside
//! what PyTorch's allocator did (from the trace's segment events).

pub mod report;
pub mod run;
pub mod snapshot;

use std::path::Path;

/// Replays the snapshot at `path`; returns the report (JSON with `json`).
pub fn run(path: &Path, json: bool) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let traces = snapshot::parse(&bytes)?;
    let cfg = crate::config::PluginConfig::from_env();
    let ours = run::replay(&traces, &cfg)?;
    let theirs = report::pytorch_figures(&traces);
    Ok(if json {
        report::json(&ours, &theirs)
    } else {
        report::text(&ours, &theirs)
    })
}
