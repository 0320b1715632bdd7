//! Time on the cores: a reading of the TSC and its rate, taken once per burst and
//! handed to every stage that needs time (learning, meters).

/// A reading of the clock (TSC cycles on the cores) and its rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub now: u64,
    pub hz: u64,
}
