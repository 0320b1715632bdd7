//! Ethernet II and 802.1Q.
use std::{fmt, str::FromStr};

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub const DST: std::ops::Range<usize> = 0..6;
pub const SRC: std::ops::Range<usize> = 6..12;
pub const ETHERTYPE: usize = 12;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Group (multicast or broadcast) addresses have the I/G bit set.
    #[inline(always)]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The address as the low 48 bits of a u64: a cheap hash key.
    #[inline(always)]
    pub fn to_u64(self) -> u64 {
        let m = self.0;
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    }

    #[inline(always)]
    pub fn from_slice(b: &[u8]) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&b[..6]);
        Mac(m)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;

    /// `02:00:00:00:00:01` or `02-00-00-00-00-01`.
    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address (six hex bytes, e.g. 02:00:00:00:00:01)"));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(format!("{s:?} is not a MAC address (six hex bytes, e.g. 02:00:00:00:00:01)"));
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address (bad hex {p:?})"))?;
        }
        Ok(Mac(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_print_and_bits() {
        let m: Mac = "02:00:00:0a:Bb:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:00:0a:bb:ff");
        assert!(!m.is_multicast());
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!(Mac::BROADCAST.is_multicast());
        assert!("02:00:00:00:00".parse::<Mac>().is_err());
        assert!("02:00:00:00:00:0g".parse::<Mac>().is_err());
        assert!("002:00:00:00:00:01".parse::<Mac>().is_err());
        assert_eq!(m.to_u64(), 0x0200000abbff);
    }
}
