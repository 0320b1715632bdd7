//! Every reason the switch drops a packet, declared once.
//!
//! Counters are kept per core and per port for each reason; names are what
//! `vswitchctl stats` prints and what the metrics endpoint exports, so they are
//! part of the user interface: add new reasons at the end, never rename.

macro_rules! drop_reasons {
    ($($variant:ident = $name:literal : $help:literal,)*) => {
        /// Why a packet was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration (and counter) order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// How many reasons there are: the length of a per-port drop-counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name used in counters, logs and the API.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One line for operators: what happened and where to look.
            pub const fn help(self) -> &'static str {
                match self { $(DropReason::$variant => $help,)* }
            }

            /// Index into a per-port drop-counter array.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The reason with that stable name, if any.
            pub fn from_name(name: &str) -> Option<DropReason> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

drop_reasons! {
    NoXconnect = "no_xconnect": "received on a port that has no cross-connect and no pipeline role",
    TxFull = "tx_full": "the egress driver did not take the packet: its tx queue was full (the peer is not draining it) or, for tap, the interface was down",
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
            assert!(r.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
            assert!(!r.help().is_empty());
        }
        assert_eq!(DropReason::from_name("no_such_reason"), None);
    }
}
