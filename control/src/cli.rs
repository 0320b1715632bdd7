//! What every vswitchctl verb shares: talking to vswitchd, and printing its replies.
//! Each feature's verbs are in its `cli.rs`; `bin/vswitchctl.rs` lists them.
use crate::api::{Envelope, Request, Response, MAX_REQUEST_BYTES, PROTOCOL_VERSION};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// Bytes of request text per part line when a request is too long for one line.
pub const PART_BYTES: usize = 256 << 10;

/// A verb: the request it sends, and how its reply is printed for people.
pub trait Verb {
    fn request(&self) -> Result<Request, String>;

    fn print(&self, _reply: Value) -> Result<(), serde_json::Error> {
        Ok(())
    }

    /// Sends the request and prints the reply. Verbs that do more (write a file, map
    /// errors back to a file's lines) replace this, and call `run_plain` for the rest.
    fn run(&self, ctl: &Ctl) -> ExitCode {
        run_plain(self, ctl)
    }
}

/// What `Verb::run` does unless a verb says otherwise.
pub fn run_plain<V: Verb + ?Sized>(verb: &V, ctl: &Ctl) -> ExitCode {
    let req = match verb.request() {
        Ok(r) => r,
        Err(e) => return ctl.fail(1, &e),
    };
    match ctl.send(&req) {
        Err(code) => code,
        Ok(v) if ctl.json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => match verb.print(v) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => ctl.fail(2, &format!("cannot read vswitchd's reply: {e}")),
        },
    }
}

/// Where vswitchd is and how replies are shown.
pub struct Ctl {
    pub socket: PathBuf,
    pub json: bool,
}

impl Ctl {
    pub fn fail(&self, code: u8, msg: &str) -> ExitCode {
        eprintln!("vswitchctl: {msg}");
        ExitCode::from(code)
    }

    /// The daemon's reply to `req`, or the exit code after saying why not (2: no
    /// answer, 1: refused).
    pub fn send(&self, req: &Request) -> Result<Value, ExitCode> {
        let resp = call(&self.socket, req).map_err(|e| self.fail(2, &e))?;
        if !resp.ok {
            return Err(self.fail(1, &resp.error.unwrap_or_else(|| "vswitchd refused the request".into())));
        }
        Ok(resp.result.unwrap_or(Value::Null))
    }
}

/// One request, one reply. A request longer than the daemon takes in one line goes as
/// part lines (`{"version":1,"part":"...","last":false}`), which the daemon joins
/// before it parses them: all or nothing as one request.
pub fn call(socket: &Path, req: &Request) -> Result<Response, String> {
    call_within(socket, req, None)
}

/// `call`, giving up once sending or waiting for the reply takes longer than `timeout`.
pub fn call_within(socket: &Path, req: &Request, timeout: Option<std::time::Duration>) -> Result<Response, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to vswitchd at {}: {e}\nIs vswitchd running? Start it with `vswitchd -- -l 0-1` (add `--no-huge -m 512 --no-pci` without hugepages), \
             or point at its socket with --socket PATH or VSWITCH_SOCKET.",
            socket.display()
        )
    })?;
    stream.set_read_timeout(timeout).and_then(|()| stream.set_write_timeout(timeout)).map_err(|e| e.to_string())?;
    let line = serde_json::to_string(&Envelope { version: PROTOCOL_VERSION, request: req.clone() })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(line.len() + 64);
    if line.len() < MAX_REQUEST_BYTES {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    } else {
        let mut rest = line.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(PART_BYTES);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (part, tail) = rest.split_at(cut);
            let msg = serde_json::json!({"version": PROTOCOL_VERSION, "part": part, "last": tail.is_empty()});
            out.extend_from_slice(msg.to_string().as_bytes());
            out.push(b'\n');
            rest = tail;
        }
    }
    stream.write_all(&out).map_err(|e| format!("sending to vswitchd at {}: {e}", socket.display()))?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| format!("reading vswitchd's reply: {e}"))?;
    if reply.is_empty() {
        return Err("vswitchd closed the connection without replying (is it shutting down?)".into());
    }
    serde_json::from_str(&reply).map_err(|e| format!("vswitchd sent a reply this vswitchctl cannot read: {e}"))
}

pub fn from<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(v)
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}

/// Columns padded to their widest cell.
pub fn table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.len())).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, s)| format!("{s:<w$}", w = widths[i])).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// A header row from column names.
pub fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}
