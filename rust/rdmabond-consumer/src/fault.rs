//! The fault schedule: `at=2s,cmd=ip link set a0 down` (optionally `name=...`).

use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub at: Duration,
    /// "failover" or "failback" unless given: a command ending in "down" is a
    /// failover, one ending in "up" a failback.
    pub name: String,
    pub cmd: String,
}

/// "2s", "1.5s", "500ms".
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("duration `{s}` needs a unit (s or ms)");
    };
    let v: f64 = num
        .parse()
        .with_context(|| format!("bad number in duration `{s}`"))?;
    if !(0.0..1e6).contains(&v) {
        bail!("duration `{s}` out of range");
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Parses one `--fault` value. `cmd=` must come last: it takes the rest.
pub fn parse(spec: &str) -> Result<Fault> {
    let (head, cmd) = match spec.find("cmd=") {
        Some(i) => (&spec[..i], spec[i + 4..].trim()),
        None => bail!("fault `{spec}` has no cmd=..."),
    };
    if cmd.is_empty() {
        bail!("fault `{spec}` has an empty command");
    }
    let (mut at, mut name) = (None, None);
    for kv in head.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("at", v)) => at = Some(parse_duration(v)?),
            Some(("name", v)) => name = Some(v.to_string()),
            _ => bail!("unknown item `{kv}` in fault `{spec}` (want at=, name=, cmd=)"),
        }
    }
    let at = at.with_context(|| format!("fault `{spec}` has no at=..."))?;
    let name = match name {
        Some(n) => n,
        None if cmd.ends_with(" down") => "failover".into(),
        None if cmd.ends_with(" up") => "failback".into(),
        None => "fault".into(),
    };
    Ok(Fault {
        at,
        name,
        cmd: cmd.to_string(),
    })
}

/// Parses all faults and sorts them by time.
pub fn parse_all(specs: &[String]) -> Result<Vec<Fault>> {
    let mut v = specs.iter().map(|s| parse(s)).collect::<Result<Vec<_>>>()?;
    v.sort_by_key(|f| f.at);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn faults_and_names() {
        let f = parse("at=2s,cmd=ip link set a0 down").unwrap();
        assert_eq!(f.at, Duration::from_secs(2));
        assert_eq!(
            (f.name.as_str(), f.cmd.as_str()),
            ("failover", "ip link set a0 down")
        );
        assert_eq!(
            parse("at=8s,cmd=ip link set a0 up").unwrap().name,
            "failback"
        );
        let f = parse("name=carrier,at=1s,cmd=ip -n fab link set fa0 down, really").unwrap();
        assert_eq!(f.name, "carrier");
        assert_eq!(f.cmd, "ip -n fab link set fa0 down, really");
        assert!(parse("cmd=true").is_err());
        assert!(parse("at=1s").is_err());
        assert!(parse("at=1s,x=2,cmd=true").is_err());
        assert!(parse("at=1s,cmd= ").is_err());
    }

    #[test]
    fn sorted_by_time() {
        let v = parse_all(&["at=8s,cmd=b up".into(), "at=2s,cmd=a down".into()]).unwrap();
        assert_eq!(v[0].name, "failover");
        assert_eq!(v[1].at, Duration::from_secs(8));
    }
}
