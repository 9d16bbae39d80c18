//! CPU time of a process from `/proc/<pid>/stat` (user + system): CPU time,
//! not wall clock, so the server's cost per packet survives a shared machine.

use crate::Res;

/// Clock ticks per second of `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`,
/// 100 on every Linux architecture this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: malformed"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks = |i: usize| -> Res<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| format!("/proc/{pid}/stat: too few fields"))?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SEC)
}

/// CPU seconds this process has used so far.
pub fn own_cpu_seconds() -> Res<f64> {
    cpu_seconds(std::process::id())
}
