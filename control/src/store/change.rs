//! A change to the desired state as the journal records it: one entry of one section put
//! or deleted, or a whole section replaced. The store knows sections only by name and by
//! the fields that identify an entry (`SECTIONS`); what an entry means is the feature's.
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a section of the desired-state file is shaped.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A list of entries identified by these fields. `ordered`: the list keeps the order
    /// entries were added in (ports are restored in that order); otherwise the feature
    /// orders them itself when it reads them back.
    List { key: &'static [&'static str], ordered: bool },
    /// An object from a name to a value (the key is the name).
    Map,
    /// One optional value.
    Single,
}

/// Every section of the desired state, as `DesiredState` names them. A feature that
/// persists something adds its line here (and its field to `DesiredState`).
pub const SECTIONS: &[(&str, Kind)] = &[
    ("ports", Kind::List { key: &["name"], ordered: true }),
    ("xconnects", Kind::List { key: &["a"], ordered: true }),
    ("networks", Kind::List { key: &["vni"], ordered: false }),
    ("vtep", Kind::Single),
    ("fib", Kind::List { key: &["vni", "mac"], ordered: false }),
    ("neighbours", Kind::List { key: &["ip"], ordered: false }),
    ("acl", Kind::List { key: &["id"], ordered: false }),
    ("acl_defaults", Kind::Map),
    ("qos", Kind::List { key: &["port"], ordered: false }),
    ("sflow", Kind::Single),
    ("stateful", Kind::List { key: &["port"], ordered: false }),
    ("conntrack_timeouts", Kind::Map),
    ("endpoints", Kind::List { key: &["vni", "ip"], ordered: false }),
    ("services", Kind::List { key: &["name"], ordered: false }),
    ("attachments", Kind::List { key: &["network", "container", "ifname"], ordered: false }),
    ("leases", Kind::List { key: &["vni", "ip"], ordered: false }),
    ("cluster", Kind::Single),
];

fn kind(section: &str) -> Option<Kind> {
    SECTIONS.iter().find(|(s, _)| *s == section).map(|(_, k)| *k)
}

/// One change, as a journal record holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The entry `k` of section `s` becomes `v` (added at the end if it is new).
    Put { s: String, k: Value, v: Value },
    /// The entry `k` of section `s` is gone.
    Del { s: String, k: Value },
    /// Section `s` becomes `v`, whole (a list, an object, or null for an unset single value).
    Set { s: String, v: Value },
}

impl Change {
    /// The section and key it changes, as a log line shows it: `put acl [7]`.
    pub fn summary(&self) -> String {
        match self {
            Change::Put { s, k, .. } => format!("put {s} {k}"),
            Change::Del { s, k } => format!("del {s} {k}"),
            Change::Set { s, .. } => format!("set {s}"),
        }
    }

    /// `value` as the entry of a list or map section; its key is read from it.
    pub fn put(section: &str, value: &impl Serialize) -> Change {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        let k = match kind(section) {
            Some(Kind::List { key, .. }) => Value::Array(key.iter().map(|f| v[*f].clone()).collect()),
            _ => Value::Null,
        };
        Change::Put { s: section.into(), k, v }
    }

    /// An entry of a map section (`acl_defaults`): `name` -> `value`.
    pub fn put_named(section: &str, name: &str, value: &impl Serialize) -> Change {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        Change::Put { s: section.into(), k: Value::Array(vec![Value::String(name.into())]), v }
    }

    /// The entry whose identifying fields (in `SECTIONS` order) have these values.
    pub fn del(section: &str, key: Value) -> Change {
        let k = match key {
            Value::Array(_) => key,
            one => Value::Array(vec![one]),
        };
        Change::Del { s: section.into(), k }
    }

    /// A whole section: a list, a map, or a single value (`None` unsets it).
    pub fn set(section: &str, value: &impl Serialize) -> Change {
        Change::Set { s: section.into(), v: serde_json::to_value(value).unwrap_or(Value::Null) }
    }
}

/// One section while records are replayed onto it: entries by key, so each record
/// costs what its entry costs.
enum Section {
    List { entries: IndexMap<String, Value>, key: &'static [&'static str], ordered: bool },
    Map(Map<String, Value>),
    Single(Value),
}

/// The desired state as sections, to replay journal records onto.
pub struct Image {
    sections: Vec<(&'static str, Section)>,
    format: Value,
}

fn key_text(k: &Value) -> String {
    k.to_string()
}

impl Image {
    /// Splits a desired-state object (as the snapshot file holds it) into sections.
    pub fn from_value(v: Value) -> Result<Image, String> {
        let Value::Object(mut obj) = v else { return Err("the state is not a JSON object".into()) };
        let format = obj.remove("format").unwrap_or(Value::Null);
        let mut sections = Vec::new();
        for (name, kind) in SECTIONS {
            let v = obj.remove(*name).unwrap_or(Value::Null);
            let section = match kind {
                Kind::List { key, ordered } => {
                    let mut entries = IndexMap::new();
                    match v {
                        Value::Null => {}
                        Value::Array(items) => {
                            for item in items {
                                let k = Value::Array(key.iter().map(|f| item[*f].clone()).collect());
                                entries.insert(key_text(&k), item);
                            }
                        }
                        _ => return Err(format!("{name}: not a list")),
                    }
                    Section::List { entries, key, ordered: *ordered }
                }
                Kind::Map => match v {
                    Value::Null => Section::Map(Map::new()),
                    Value::Object(m) => Section::Map(m),
                    _ => return Err(format!("{name}: not an object")),
                },
                Kind::Single => Section::Single(v),
            };
            sections.push((*name, section));
        }
        if let Some(extra) = obj.keys().next() {
            return Err(format!("unknown section {extra:?}"));
        }
        Ok(Image { sections, format })
    }

    /// Applies one change; an error names what did not fit (a journal this build cannot
    /// read, not a user error).
    pub fn apply(&mut self, c: Change) -> Result<(), String> {
        let name = match &c {
            Change::Put { s, .. } | Change::Del { s, .. } | Change::Set { s, .. } => s.clone(),
        };
        let section = self
            .sections
            .iter_mut()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| format!("unknown section {name:?}"))?;
        match (section, c) {
            (Section::List { entries, .. }, Change::Put { k, v, .. }) => {
                entries.insert(key_text(&k), v);
            }
            (Section::List { entries, ordered, .. }, Change::Del { k, .. }) => {
                if *ordered {
                    entries.shift_remove(&key_text(&k));
                } else {
                    entries.swap_remove(&key_text(&k));
                }
            }
            (Section::List { entries, key, .. }, Change::Set { v, .. }) => {
                entries.clear();
                for item in v.as_array().cloned().unwrap_or_default() {
                    let k = Value::Array(key.iter().map(|f| item[*f].clone()).collect());
                    entries.insert(key_text(&k), item);
                }
            }
            (Section::Map(m), Change::Put { k, v, .. }) => {
                let name = k[0].as_str().ok_or_else(|| format!("{name}: a map key must be a string"))?;
                m.insert(name.to_string(), v);
            }
            (Section::Map(m), Change::Del { k, .. }) => {
                if let Some(n) = k[0].as_str() {
                    m.remove(n);
                }
            }
            (Section::Map(m), Change::Set { v, .. }) => {
                *m = match v {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
            }
            (Section::Single(s), Change::Set { v, .. }) => *s = v,
            (Section::Single(_), _) => return Err(format!("{name}: a single value is only ever set whole")),
        }
        Ok(())
    }

    /// The desired-state object again, sections in file order; empty ones left out as
    /// the file leaves them out.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("format".into(), self.format.clone());
        for (name, section) in &self.sections {
            let v = match section {
                Section::List { entries, .. } => Value::Array(entries.values().cloned().collect()),
                Section::Map(m) if m.is_empty() => continue,
                Section::Map(m) => Value::Object(m.clone()),
                Section::Single(Value::Null) => continue,
                Section::Single(v) => v.clone(),
            };
            obj.insert(name.to_string(), v);
        }
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn puts_dels_and_sets_land_where_the_file_keeps_them() {
        let mut img = Image::from_value(json!({
            "format": 1,
            "ports": [{"name": "a", "devargs": "x"}, {"name": "b", "devargs": "y"}],
            "acl": [{"id": 1, "priority": 5}],
        }))
        .unwrap();
        img.apply(Change::put("ports", &json!({"name": "c", "devargs": "z"}))).unwrap();
        img.apply(Change::put("ports", &json!({"name": "a", "devargs": "x2"}))).unwrap();
        img.apply(Change::del("ports", json!("b"))).unwrap();
        img.apply(Change::put("acl", &json!({"id": 2, "priority": 7}))).unwrap();
        img.apply(Change::del("acl", json!(1))).unwrap();
        img.apply(Change::put("fib", &json!({"vni": 100, "mac": "02:00:00:00:00:01", "port": "a"}))).unwrap();
        img.apply(Change::del("fib", json!([100, "02:00:00:00:00:01"]))).unwrap();
        img.apply(Change::put_named("acl_defaults", "a", &json!("deny"))).unwrap();
        img.apply(Change::set("vtep", &json!({"ip": "10.0.0.1/24", "uplink": "up"}))).unwrap();
        img.apply(Change::set("sflow", &Option::<u8>::None)).unwrap();
        assert_eq!(
            img.to_value(),
            json!({
                "format": 1,
                "ports": [{"name": "a", "devargs": "x2"}, {"name": "c", "devargs": "z"}],
                "xconnects": [],
                "networks": [],
                "vtep": {"ip": "10.0.0.1/24", "uplink": "up"},
                "fib": [],
                "neighbours": [],
                "acl": [{"id": 2, "priority": 7}],
                "acl_defaults": {"a": "deny"},
                "qos": [],
                "stateful": [],
                "endpoints": [],
                "services": [],
                "attachments": [],
                "leases": [],
            })
        );
    }

    #[test]
    fn records_this_build_cannot_place_are_errors() {
        let mut img = Image::from_value(json!({"format": 1})).unwrap();
        assert!(img.apply(Change::put("bogus", &json!({}))).unwrap_err().contains("bogus"));
        assert!(img.apply(Change::put("vtep", &json!({}))).is_err());
        assert!(Image::from_value(json!({"format": 1, "extra": []})).is_err());
    }
}
