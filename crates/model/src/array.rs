//! Task arrays: `START-END`, with a step (`1-99:2`: 1, 3, ..., 99), a list of such parts
//! (`1,3,10-20`, ascending, not overlapping) and a throttle (`%10`: at most 10 tasks of the
//! array run at once), or a single index `N`.
//!
//! Tasks are numbered by *slot* (0-based position in the array) inside the engine and by
//! *index* (what `ZENITH_TASK_INDEX` says) outside it; a part's first slot is kept so that
//! either maps to the other by binary search, whatever the number of parts.

use crate::ParseError;

/// Most comma-separated parts one array may list.
pub const MAX_ARRAY_PARTS: usize = 1000;

/// One `START-END[:STEP]` part of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayPart {
    pub start: u32,
    /// The last index asked for (the part's last task is the last step at or below it).
    pub end: u32,
    /// Between consecutive indices (at least 1).
    pub step: u32,
}

impl ArrayPart {
    fn len(&self) -> u32 {
        self.end.saturating_sub(self.start) / self.step.max(1) + 1
    }

    fn last(&self) -> u32 {
        self.start + (self.len() - 1) * self.step.max(1)
    }
}

/// The task indices of an array and how many may run at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayRange {
    /// Ascending, not overlapping, at least one.
    parts: Vec<ArrayPart>,
    /// The slot of each part's first task.
    firsts: Vec<u32>,
    /// At most this many of its tasks run at once.
    pub throttle: Option<u32>,
}

impl ArrayRange {
    /// `START-END`, every index, no throttle.
    pub fn new(start: u32, end: u32) -> ArrayRange {
        ArrayRange {
            parts: vec![ArrayPart {
                start,
                end: end.max(start),
                step: 1,
            }],
            firsts: vec![0],
            throttle: None,
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> u32 {
        match (self.parts.last(), self.firsts.last()) {
            (Some(p), Some(f)) => f.saturating_add(p.len()),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn parts(&self) -> &[ArrayPart] {
        &self.parts
    }

    /// The index of the task in `slot` (0-based position in the array).
    pub fn index_of(&self, slot: u32) -> u32 {
        let i = self
            .firsts
            .partition_point(|f| *f <= slot)
            .saturating_sub(1);
        match (self.parts.get(i), self.firsts.get(i)) {
            (Some(p), Some(f)) => p
                .start
                .saturating_add((slot - f).saturating_mul(p.step.max(1))),
            _ => slot,
        }
    }

    /// The slot of task `index`, if it is one of the array's.
    pub fn slot_of(&self, index: u32) -> Option<u32> {
        let i = self
            .parts
            .partition_point(|p| p.start <= index)
            .checked_sub(1)?;
        let (p, f) = (self.parts.get(i)?, self.firsts.get(i)?);
        let step = p.step.max(1);
        let off = index - p.start;
        (off.is_multiple_of(step) && off / step < p.len()).then_some(f + off / step)
    }

    fn from_parts(parts: Vec<ArrayPart>, throttle: Option<u32>) -> ArrayRange {
        let mut firsts = Vec::with_capacity(parts.len());
        let mut next = 0u32;
        for p in &parts {
            firsts.push(next);
            next = next.saturating_add(p.len());
        }
        ArrayRange {
            parts,
            firsts,
            throttle,
        }
    }
}

impl std::fmt::Display for ArrayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if p.start == p.end {
                write!(f, "{}", p.start)?;
            } else {
                write!(f, "{}-{}", p.start, p.end)?;
            }
            if p.step != 1 {
                write!(f, ":{}", p.step)?;
            }
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
        if throttle == Some(0) {
            return Err(bad());
        }
        let mut parts: Vec<ArrayPart> = Vec::new();
        for text in rest.split(',') {
            if parts.len() == MAX_ARRAY_PARTS {
                return Err(bad());
            }
            let (range, step) = match text.split_once(':') {
                Some((r, st)) => (r, num(st)?),
                None => (text, 1),
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
            if step == 0 {
                return Err(bad());
            }
            let part = ArrayPart { start, end, step };
            if parts.last().is_some_and(|p| p.last() >= start) {
                return Err(ParseError::ArrayOrder {
                    text: s.to_string(),
                });
            }
            parts.push(part);
        }
        Ok(ArrayRange::from_parts(parts, throttle))
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
        for bad in [
            "5-1", "x", "1-9:0", "1-9%0", "1-9:", "%3", "1-9%a", "1,", "3,1", "1-5,5",
        ] {
            assert!(bad.parse::<ArrayRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_map_slots_to_indices_both_ways() {
        let a: ArrayRange = "1,3,10-14:2,20-21%2".parse().unwrap();
        let indices: Vec<u32> = (0..a.len()).map(|s| a.index_of(s)).collect();
        assert_eq!(indices, vec![1, 3, 10, 12, 14, 20, 21]);
        for (slot, index) in indices.iter().enumerate() {
            assert_eq!(a.slot_of(*index), Some(slot as u32), "{index}");
        }
        for not in [0, 2, 11, 15, 19, 22] {
            assert_eq!(a.slot_of(not), None, "{not}");
        }
        assert_eq!(a.to_string(), "1,3,10-14:2,20-21%2");
        assert_eq!(a.throttle, Some(2));
        // Overlapping parts are refused: "1-5:2,4" would be fine (1, 3, 5 then 4 is below 5).
        assert!("1-5:2,4".parse::<ArrayRange>().is_err());
        assert!("1-5:2,6".parse::<ArrayRange>().is_ok());
        let many = (0..=MAX_ARRAY_PARTS)
            .map(|i| (i * 2).to_string())
            .collect::<Vec<_>>();
        assert!(
            many.join(",").parse::<ArrayRange>().is_err(),
            "too many parts"
        );
    }
}
