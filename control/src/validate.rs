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
