//! Telling systemd how the daemon is doing (sd_notify): READY=1 once the API socket
//! serves, so units ordered after vswitchd (and `systemctl start`) wait for a switch
//! that answers; STOPPING=1 on the way out. Nothing happens outside a Type=notify
//! unit (no NOTIFY_SOCKET).
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` ("READY=1", "STATUS=...") to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = path.to_string_lossy().into_owned();
    if let Err(e) = send(&path, state) {
        tracing::warn!("cannot tell systemd {state:?} through {path}: {e}");
    }
}

fn send(path: &str, state: &str) -> std::io::Result<()> {
    let addr = match path.strip_prefix('@') {
        // An abstract socket (systemd's own choice in containers and user managers).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reaches_the_socket_systemd_names() {
        let dir = std::env::temp_dir().join(format!("vswitch-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let name = format!("vswitch-notify-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send(&format!("@{name}"), "STOPPING=1").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
