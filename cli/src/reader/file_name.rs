//! Names of stats files: `poolside-<uid>-<pid>`.

/// The uid and pid a stats file's name carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileName {
    pub uid: u32,
    pub pid: u32,
}

/// Prefix shared by every stats file.
pub const PREFIX: &str = "poolside-";

impl FileName {
    /// Parses a name; `None` for anything that is not exactly `poolside-<uid>-<pid>`.
    pub fn parse(name: &str) -> Option<FileName> {
        let rest = name.strip_prefix(PREFIX)?;
        let (uid, pid) = rest.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(uid) || !digits(pid) {
            return None;
        }
        Some(FileName {
            uid: uid.parse().ok()?,
            pid: pid.parse().ok()?,
        })
    }

    /// The name for `uid` and `pid`.
    pub fn format(uid: u32, pid: u32) -> String {
        format!("{PREFIX}{uid}-{pid}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_exact_names() {
        assert_eq!(
            FileName::parse("poolside-1000-42"),
            Some(FileName { uid: 1000, pid: 42 })
        );
        for bad in [
            "poolside-1000",
            "poolside--1",
            "poolside-a-1",
            "poolside-1-2-3",
            "x-1-2",
            "poolside-1-+2",
        ] {
            assert_eq!(FileName::parse(bad), None, "{bad}");
        }
        assert_eq!(FileName::format(7, 9), "poolside-7-9");
    }
}
