//! The API: one JSON request per line on the Unix socket, one JSON response per line.
//!
//! `{"version":1,"request":{"cmd":"port_add","name":"vm1","devargs":"net_tap0"}}`
//! gets `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
//!
//! Each feature declares its own requests (`<feature>/api.rs`, an enum tagged by `cmd`);
//! `Request` is their union, one line per feature, and the wire format stays flat.
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

pub use crate::{
    acl::api::*, apply::api::*, capture::api::*, cluster::api::*, cni::api::*, conntrack::api::*, endpoints::api::*,
    overlay::api::*, ports::api::*, qos::api::*, services::api::*, sflow::api::*, stats::api::*, trace::api::*,
    xconnect::api::*,
};

/// Bumped when a request or reply changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;
/// A request line longer than this is refused and the connection closed.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

/// Every request, by the feature that answers it.
// Parsed once and handled once: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Port(PortRequest),
    Xconnect(XconnectRequest),
    Overlay(OverlayRequest),
    Acl(AclRequest),
    Qos(QosRequest),
    Sflow(SflowRequest),
    Capture(CaptureRequest),
    Trace(TraceRequest),
    Apply(ApplyRequest),
    Stats(StatsRequest),
    Conntrack(CtRequest),
    Endpoint(EndpointRequest),
    Service(ServiceRequest),
    Cni(CniRequest),
    Cluster(ClusterRequest),
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Request::Port(r) => r.serialize(s),
            Request::Xconnect(r) => r.serialize(s),
            Request::Overlay(r) => r.serialize(s),
            Request::Acl(r) => r.serialize(s),
            Request::Qos(r) => r.serialize(s),
            Request::Sflow(r) => r.serialize(s),
            Request::Capture(r) => r.serialize(s),
            Request::Trace(r) => r.serialize(s),
            Request::Apply(r) => r.serialize(s),
            Request::Stats(r) => r.serialize(s),
            Request::Conntrack(r) => r.serialize(s),
            Request::Endpoint(r) => r.serialize(s),
            Request::Service(r) => r.serialize(s),
            Request::Cni(r) => r.serialize(s),
            Request::Cluster(r) => r.serialize(s),
        }
    }
}

/// Tries the feature whose requests `T` are: `None` if `cmd` is not one of them.
fn feature<T: serde::de::DeserializeOwned>(
    v: &serde_json::Value,
    wrap: fn(T) -> Request,
) -> Option<Result<Request, serde_json::Error>> {
    match T::deserialize(v) {
        Ok(r) => Some(Ok(wrap(r))),
        Err(e) if e.to_string().starts_with("unknown variant") => None,
        Err(e) => Some(Err(e)),
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let cmd = v.get("cmd").and_then(|c| c.as_str()).ok_or_else(|| D::Error::missing_field("cmd"))?;
        let found = feature(&v, Request::Port)
            .or_else(|| feature(&v, Request::Xconnect))
            .or_else(|| feature(&v, Request::Overlay))
            .or_else(|| feature(&v, Request::Acl))
            .or_else(|| feature(&v, Request::Qos))
            .or_else(|| feature(&v, Request::Sflow))
            .or_else(|| feature(&v, Request::Capture))
            .or_else(|| feature(&v, Request::Trace))
            .or_else(|| feature(&v, Request::Apply))
            .or_else(|| feature(&v, Request::Stats))
            .or_else(|| feature(&v, Request::Conntrack))
            .or_else(|| feature(&v, Request::Endpoint))
            .or_else(|| feature(&v, Request::Service))
            .or_else(|| feature(&v, Request::Cni))
            .or_else(|| feature(&v, Request::Cluster));
        match found {
            Some(r) => r.map_err(D::Error::custom),
            None => Err(D::Error::custom(format!("unknown command {cmd:?} (vswitchctl --help lists them)"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: impl Serialize) -> Response {
        match serde_json::to_value(result) {
            Ok(v) => Response { ok: true, result: Some(v), error: None },
            Err(e) => Response::err(format!("internal error encoding the reply: {e}")),
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response { ok: false, result: None, error: Some(msg.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_tagged_snake_case() {
        let e: Envelope = serde_json::from_str(
            r#"{"version":1,"request":{"cmd":"port_add","name":"a","devargs":"net_null0","queues":2}}"#,
        )
        .unwrap();
        assert_eq!(
            e.request,
            Request::Port(PortRequest::PortAdd(PortSpec {
                name: "a".into(),
                devargs: "net_null0".into(),
                queues: Some(2),
                cores: None,
                mtu: None,
                role: None,
                vni: None,
                admin: Default::default(),
            }))
        );
        let bad = serde_json::from_str::<Envelope>(
            r#"{"version":1,"request":{"cmd":"port_add","name":"a","devargs":"x","bogus":1}}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("bogus"));
        let unknown = serde_json::from_str::<Envelope>(r#"{"version":1,"request":{"cmd":"reboot"}}"#);
        assert!(unknown.unwrap_err().to_string().contains("reboot"));
    }
}
