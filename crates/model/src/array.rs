//! Task arrays: `START-END`, with a step (`1-99:2`: 1, 3, ..., 99) and a throttle (`%10`: at
//! most 10 tasks of the array run at once), or a single index `N`.

use crate::ParseError;

/// The task indices of an array and how many may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayRange {
    pub start: u32,
    /// The last index asked for (the last task is the last step at or below it).
    pub end: u32,
    /// Between consecutive indices (1 when not written).
    pub step: u32,
    /// At most this many of its tasks run at once.
    pub throttle: Option<u32>,
}

impl ArrayRange {
    /// `START-END`, every index, no throttle.
    pub fn new(start: u32, end: u32) -> ArrayRange {
        ArrayRange {
            start,
            end,
            step: 1,
            throttle: None,
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> u32 {
        let step = self.step.max(1);
        self.end.saturating_sub(self.start) / step + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The index of the task in `slot` (0-based position in the array).
    pub fn index_of(&self, slot: u32) -> u32 {
        self.start
            .saturating_add(slot.saturating_mul(self.step.max(1)))
    }

    /// The slot of task `index`, if it is one of the array's.
    pub fn slot_of(&self, index: u32) -> Option<u32> {
        let step = self.step.max(1);
        let off = index.checked_sub(self.start)?;
        (off % step == 0 && off / step < self.len()).then_some(off / step)
    }
}

impl std::fmt::Display for ArrayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)?;
        if self.step != 1 {
            write!(f, ":{}", self.step)?;
        }
        if let Some(t) = self.throttle {
            write!(f, "%{t}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ArrayRange {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::Array {
            text: s.to_string(),
        };
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let (rest, throttle) = match s.split_once('%') {
            Some((r, t)) => (r, Some(num(t)?)),
            None => (s, None),
        };
        let (range, step) = match rest.split_once(':') {
            Some((r, st)) => (r, num(st)?),
            None => (rest, 1),
        };
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(range)?, num(range)?),
        };
        if end < start {
            return Err(ParseError::ArrayEnd {
                text: s.to_string(),
            });
        }
        if step == 0 || throttle == Some(0) {
            return Err(bad());
        }
        Ok(ArrayRange {
            start,
            end,
            step,
            throttle,
        })
    }
}

serde_as_text!(ArrayRange);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_steps_and_throttles_parse_and_print_back() {
        let a: ArrayRange = "1-1000".parse().unwrap();
        assert_eq!((a.len(), a.index_of(999), a.throttle), (1000, 1000, None));
        let s: ArrayRange = "1-99:2%10".parse().unwrap();
        assert_eq!((s.len(), s.index_of(0), s.index_of(49)), (50, 1, 99));
        assert_eq!(s.throttle, Some(10));
        assert_eq!(s.to_string(), "1-99:2%10");
        assert_eq!(
            (s.slot_of(3), s.slot_of(4), s.slot_of(101)),
            (Some(1), None, None)
        );
        let odd: ArrayRange = "0-10:4".parse().unwrap();
        assert_eq!((odd.len(), odd.index_of(2)), (3, 8), "0, 4, 8");
        let one: ArrayRange = "7".parse().unwrap();
        assert_eq!((one.len(), one.index_of(0)), (1, 7));
        for bad in ["5-1", "x", "1-9:0", "1-9%0", "1-9:", "%3", "1-9%a"] {
            assert!(bad.parse::<ArrayRange>().is_err(), "{bad}");
        }
    }
}
