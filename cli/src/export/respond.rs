//! What `poolside export` answers: `GET /metrics` (and `/`) gets a fresh scan of the stats
//! directory as Prometheus text, another path 404, another method 405. Nothing here knows
//! about connections; `server.rs` holds those.

use super::prometheus;
use crate::reader;
use crate::report::build;
use hyper::{Method, StatusCode};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

/// Where a request goes, from its method and path (the query is not part of the path).
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
}

/// Routes a request.
pub fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::GET, "/metrics" | "/") => Route::Metrics,
        (&Method::GET, _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

/// The status and plain-text body for a request. A scan warning is printed on stderr the
/// first time it is seen (`warned` remembers them across requests).
pub fn answer(
    method: &Method,
    path: &str,
    dir: &Path,
    warned: &Mutex<HashSet<String>>,
) -> (StatusCode, String) {
    match route(method, path) {
        Route::Metrics => metrics(dir, warned),
        Route::NotFound => (StatusCode::NOT_FOUND, "try /metrics\n".to_string()),
        Route::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_string()),
    }
}

fn metrics(dir: &Path, warned: &Mutex<HashSet<String>>) -> (StatusCode, String) {
    let scan = match reader::scan(dir) {
        Ok(scan) => scan,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read {}: {e}\n", dir.display()),
            )
        }
    };
    // The lock is poisoned only by a panic, and the binary aborts on panic.
    if let Ok(mut seen) = warned.lock() {
        for w in &scan.warnings {
            if seen.insert(w.clone()) {
                eprintln!("poolside export: warning: {w}");
            }
        }
    }
    let reports: Vec<_> = scan
        .processes
        .iter()
        .map(|p| build::process(p, true))
        .collect();
    (
        StatusCode::OK,
        prometheus::render(&reports, scan.warnings.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/metrics/x"), Route::NotFound);
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::HEAD, "/metrics"), Route::MethodNotAllowed);
    }
}
