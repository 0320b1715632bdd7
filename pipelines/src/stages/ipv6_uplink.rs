//! IPv6 on the uplink, where the host has an address for north-south traffic (the
//! underlay itself is IPv4): neighbour solicitations for that address are answered in
//! place, advertisements go to the control plane (it resolves next hops), and packets to
//! the address are masqueraded connections' replies or for a NodePort.
use super::Ctx;
use crate::{
    gateway::{advertise, ND_ADVERT, ND_SOLICIT},
    meta::{Action, Meta},
    services,
    wire::ipv4,
    DropReason, Frame, PortId,
};

/// An IPv6 frame from the uplink `port`, the host's IPv6 address being `host`; `at`:
/// where the batch meets the services (if there is a session table).
#[cold]
#[inline(never)]
pub(super) fn from_uplink6<F: Frame>(
    ctx: &Ctx,
    port: PortId,
    at: Option<&services::At>,
    host: u128,
    f: &mut F,
    m: &mut Meta,
) -> Action {
    let t = ctx.tables;
    let Some(v) = &t.vtep else { return Action::Drop(DropReason::NoVtep) };
    if m.proto == ipv4::PROTO_ICMPV6 && m.l4 != 0 && !m.fragment {
        let l4 = m.l4 as usize;
        match m.sport {
            ND_SOLICIT => {
                let target = f.head().get(l4 + 8..l4 + 24).and_then(|b| b.try_into().ok()).map(u128::from_be_bytes);
                // A neighbour's hop limit and no extension headers (RFC 4861 7.1.1). (From
                // the unspecified address: another host checks whether the address is
                // free before it takes it; answered to all nodes, it is not.)
                let neighbour = f.head().get(m.l3 as usize + 7) == Some(&255) && l4 == m.l3 as usize + 40;
                if target != Some(host) || !neighbour || !advertise(f, m, host, v.mac, false) {
                    return Action::Drop(DropReason::ArpNotForUs);
                }
                return Action::Tx(port);
            }
            s if s == ND_ADVERT as u16 => return Action::Punt,
            _ => {}
        }
    }
    if m.dst != v.mac {
        return Action::Drop(DropReason::NotOurMac);
    }
    let Some(at) = at else { return Action::Drop(DropReason::NotVxlan) };
    services::outside::from_outside(t, at, f, m).unwrap_or(Action::Drop(DropReason::NotVxlan))
}
