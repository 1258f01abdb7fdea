//! A process's resident memory, from `/proc/<pid>/status` (Linux).

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmHWM`: the peak resident set size since the process started.
    pub peak_kib: u64,
    /// `VmRSS`: the resident set size now.
    pub rss_kib: u64,
}

/// The value in KiB of one `Key:   1234 kB` line of a status file.
pub fn field_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        match words.next() {
            None | Some("kB") => Some(value),
            Some(_) => None,
        }
    })
}

/// Both figures from the text of a status file.
pub fn parse(status: &str) -> Option<Memory> {
    Some(Memory { peak_kib: field_kib(status, "VmHWM")?, rss_kib: field_kib(status, "VmRSS")? })
}

/// Reads the figures of a live process; `None` once it has exited or where there is no /proc.
pub fn read(pid: u32) -> Option<Memory> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tminimal-lambda\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t4242\n\
        VmPeak:\t   20480 kB\nVmSize:\t   18432 kB\nVmHWM:\t    3712 kB\nVmRSS:\t    3600 kB\n\
        RssAnon:\t     512 kB\nThreads:\t3\n";

    #[test]
    fn reads_peak_and_current_resident_memory() {
        assert_eq!(parse(STATUS), Some(Memory { peak_kib: 3712, rss_kib: 3600 }));
        assert_eq!(field_kib(STATUS, "VmPeak"), Some(20480));
        assert_eq!(field_kib(STATUS, "Threads"), Some(3), "a count without a unit");
    }

    #[test]
    fn a_missing_or_malformed_field_is_none() {
        assert_eq!(field_kib(STATUS, "VmSwap"), None);
        assert_eq!(field_kib(STATUS, "Vm"), None, "a prefix of a key is not the key");
        assert_eq!(field_kib("VmHWM:\tlots kB\n", "VmHWM"), None);
        assert_eq!(field_kib("VmHWM:\t12 MB\n", "VmHWM"), None);
        assert_eq!(parse("VmHWM:\t12 kB\n"), None, "VmRSS missing");
        assert_eq!(parse(""), None);
    }

    #[test]
    fn reads_its_own_process() {
        let own = read(std::process::id()).expect("/proc/self/status");
        assert!(own.peak_kib >= own.rss_kib);
        assert!(own.rss_kib > 0);
    }
}
