//! Validation of what users give us, with errors that name the field and the rule.

/// Port names: what an operator types and greps for. 1..=32 of `[A-Za-z0-9_.-]`,
/// starting with a letter or digit.
pub fn port_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!("{field}: a port name has 1 to 32 characters, {:?} has {}", name, name.len()));
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{field}: port name {name:?} must start with a letter or digit"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("{field}: port name {name:?} has {c:?}; use letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

/// A port spec on its own and against the ports already there (`others`): name,
/// devargs syntax, unique name and device, queues, MTU, PMD lcores.
pub fn port_spec<'a>(
    spec: &crate::api::PortSpec,
    others: impl IntoIterator<Item = &'a crate::api::PortSpec>,
    workers: &[u32],
) -> Result<(), String> {
    port_name("name", &spec.name)?;
    let device = device(&spec.devargs)?;
    if let Some(Ok(k)) = dataplane::kernel::KernelConf::parse(&spec.devargs) {
        if let (Some(a), Some(b)) = (k.queues, spec.queues) {
            if a != b {
                return Err(format!("queues: {b} disagrees with queues={a} in the devargs; give one of them"));
            }
        }
    }
    for o in others {
        if o.name == spec.name {
            return Err(format!(
                "name: a port named {:?} already exists; pick another name or delete it first",
                spec.name
            ));
        }
        if self::device(&o.devargs).is_ok_and(|d| d == device) {
            return Err(format!("devargs: device {device:?} is already used by port {:?}", o.name));
        }
    }
    queues(spec.queues.unwrap_or(1))?;
    if let Some(m) = spec.mtu {
        mtu(m)?;
    }
    if let Some(cores) = &spec.cores {
        if cores.is_empty() {
            return Err("cores: give at least one PMD lcore".into());
        }
        if let Some(c) = cores.iter().find(|c| !workers.contains(c)) {
            return Err(format!("cores: lcore {c} is not a PMD lcore of this switch; PMD lcores are {workers:?}"));
        }
    }
    Ok(())
}

/// The device a port's devargs name: two ports may not share one.
pub fn device(devargs: &str) -> Result<String, String> {
    if let Some(k) = dataplane::kernel::KernelConf::parse(devargs) {
        return Ok(k?.device());
    }
    dataplane::port::device_name(devargs).map(str::to_owned).map_err(|e| format!("devargs: {e}"))
}

/// Rx queues per port.
pub fn queues(q: u16) -> Result<(), String> {
    if q == 0 || q > 64 {
        return Err(format!("queues: {q} is out of range; give 1 to 64"));
    }
    Ok(())
}

/// MTU of a port (Ethernet payload bytes).
pub fn mtu(m: u16) -> Result<(), String> {
    if !(68..=9600).contains(&m) {
        return Err(format!("mtu: {m} is out of range; give 68 to 9600"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        assert!(port_name("name", "vm1").is_ok());
        assert!(port_name("name", "uplink.0-a_b").is_ok());
        assert!(port_name("name", "").unwrap_err().contains("1 to 32"));
        assert!(port_name("name", &"x".repeat(33)).is_err());
        assert!(port_name("name", "-x").unwrap_err().contains("start with"));
        assert!(port_name("name", "a b").unwrap_err().contains("' '"));
        assert!(port_name("name", "a/b").is_err());
    }

    #[test]
    fn ranges() {
        assert!(queues(1).is_ok() && queues(64).is_ok());
        assert!(queues(0).unwrap_err().starts_with("queues:"));
        assert!(mtu(1500).is_ok() && mtu(9000).is_ok());
        assert!(mtu(10).unwrap_err().starts_with("mtu:"));
    }
}
