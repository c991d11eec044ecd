//! Small readers of `/proc/<pid>` used to tell a live init from an exited or reused pid.

/// Start time (clock ticks since boot) of `pid` and whether it is a zombie, or `None` if gone.
pub fn start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses the fields berth needs from a `/proc/<pid>/stat` line.
pub fn parse_stat(stat: &str) -> Option<(u64, bool)> {
    // The command name is in parentheses and may contain spaces or ')'; split after the last.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    // After "state", starttime is field 22 of the line, i.e. the 19th after state.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "123 (a) b) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(line), Some((98765, false)));
        let z = "5 (sh) Z 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0";
        assert_eq!(parse_stat(z), Some((42, true)));
        assert_eq!(parse_stat("garbage"), None);
        // A line cut right after the name once sliced past its end.
        assert_eq!(parse_stat("1 (x)"), None);
        assert_eq!(parse_stat("1 (x) "), None);
    }

    #[test]
    fn reads_own_start_time() {
        let (t, zombie) = start_time(std::process::id() as i32).unwrap();
        assert!(t > 0 && !zombie);
    }
}
