//! The room's opening hours (`[[schedule]]` windows): when the live room opens and closes by
//! itself. Not to be confused with [`crate::scheduler`], which decides the next sentence.
//!
//! A window is a local start and end time on chosen weekdays, in a named time zone. An end at
//! or before the start means the window runs past midnight into the next day (it belongs to the
//! day it starts on). Local times that a DST change skips or repeats resolve the way calendars
//! do ("compatible"): a skipped time moves forward by the gap, a repeated time takes its first
//! occurrence. The time zone rules are bundled, so a box with stale tzdata still agrees.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

#[derive(Debug, Clone)]
pub struct Window {
    /// Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
    pub start: Time,
    pub end: Time,
    pub tz: TimeZone,
}

#[derive(Debug, Clone, Default)]
pub struct OpeningHours {
    pub windows: Vec<Window>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses a weekday name (`mon`…`sun`) or `daily`/`weekdays`/`weekends` into day flags.
pub fn parse_day(name: &str, days: &mut [bool; 7]) -> Result<(), String> {
    match name {
        "daily" => days.iter_mut().for_each(|d| *d = true),
        "weekdays" => days[..5].iter_mut().for_each(|d| *d = true),
        "weekends" => days[5..].iter_mut().for_each(|d| *d = true),
        other => {
            let i = DAY_NAMES
                .iter()
                .position(|d| *d == other)
                .ok_or_else(|| format!("`{other}` is not a day: use mon…sun, daily, weekdays or weekends"))?;
            days[i] = true;
        }
    }
    Ok(())
}

/// Parses `HH:MM` (24-hour).
pub fn parse_time(s: &str) -> Result<Time, String> {
    let bad = || format!("`{s}` is not a time like \"09:30\"");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// Resolves a time zone name (`Asia/Shanghai`); `local` is the system's zone.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    if name == "local" {
        return Ok(TimeZone::system());
    }
    TimeZone::get(name).map_err(|_| format!("`{name}` is not a known time zone (e.g. \"Asia/Shanghai\")"))
}

impl Window {
    /// The window's instants for the window starting on local `day`, if it runs that day.
    fn on(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[day.weekday().to_monday_zero_offset() as usize] {
            return None;
        }
        let start = self.tz.to_ambiguous_timestamp(day.to_datetime(self.start)).compatible().ok()?;
        let end_day = if self.end <= self.start { day.tomorrow().ok()? } else { day };
        let end = self.tz.to_ambiguous_timestamp(end_day.to_datetime(self.end)).compatible().ok()?;
        (end > start).then_some((start, end))
    }

    /// Every occurrence that could matter around `now`: from yesterday (overnight windows) to
    /// a week ahead.
    fn around(&self, now: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = self.tz.to_datetime(now).date();
        (-1i64..=8).filter_map(move |k| today.checked_add(jiff::Span::new().days(k)).ok()).filter_map(|d| self.on(d))
    }
}

impl OpeningHours {
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Whether the room should be live at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.windows.iter().any(|w| w.around(now).any(|(s, e)| s <= now && now < e))
    }

    /// The next instant after `now` at which a window opens or closes (within about a week).
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.windows.iter().flat_map(|w| w.around(now)).flat_map(|(s, e)| [s, e]).filter(|t| *t > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> Window {
        let mut flags = [false; 7];
        for d in days {
            parse_day(d, &mut flags).unwrap();
        }
        Window {
            days: flags,
            start: parse_time(start).unwrap(),
            end: parse_time(end).unwrap(),
            tz: parse_time_zone(tz).unwrap(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_day_window_in_its_time_zone() {
        let s = OpeningHours { windows: vec![window(&["weekdays"], "09:00", "21:00", "Asia/Shanghai")] };
        // Monday 2026-11-23, 09:00 in Shanghai is 01:00 UTC.
        assert!(!s.is_open(at("2026-11-23T00:59:59Z")));
        assert!(s.is_open(at("2026-11-23T01:00:00Z")));
        assert!(s.is_open(at("2026-11-23T12:59:59Z")));
        assert!(!s.is_open(at("2026-11-23T13:00:00Z")));
        // Saturday: closed all day.
        assert!(!s.is_open(at("2026-11-28T05:00:00Z")));
        assert_eq!(s.next_change(at("2026-11-23T00:00:00Z")), Some(at("2026-11-23T01:00:00Z")));
        assert_eq!(s.next_change(at("2026-11-23T02:00:00Z")), Some(at("2026-11-23T13:00:00Z")));
        // Friday evening → Monday morning.
        assert_eq!(s.next_change(at("2026-11-27T14:00:00Z")), Some(at("2026-11-30T01:00:00Z")));
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_starts() {
        let s = OpeningHours { windows: vec![window(&["fri"], "22:00", "02:00", "UTC")] };
        assert!(s.is_open(at("2026-11-27T23:30:00Z"))); // Friday night
        assert!(s.is_open(at("2026-11-28T01:59:00Z"))); // Saturday early: Friday's window
        assert!(!s.is_open(at("2026-11-28T02:00:00Z")));
        assert!(!s.is_open(at("2026-11-28T23:00:00Z"))); // Saturday night: no window
        assert!(!s.is_open(at("2026-11-27T01:00:00Z"))); // Friday early: Thursday had none
    }

    #[test]
    fn spring_forward_shortens_a_window_and_moves_a_skipped_start() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let s = OpeningHours { windows: vec![window(&["daily"], "01:30", "03:30", "Europe/Berlin")] };
        // 01:30 CET = 00:30 UTC; 03:30 CEST = 01:30 UTC: one hour long.
        assert!(!s.is_open(at("2026-03-29T00:29:59Z")));
        assert!(s.is_open(at("2026-03-29T00:30:00Z")));
        assert!(!s.is_open(at("2026-03-29T01:30:00Z")));
        // A start at 02:30, which does not exist that night, opens at 03:30 CEST (01:30 UTC).
        let s = OpeningHours { windows: vec![window(&["sun"], "02:30", "05:00", "Europe/Berlin")] };
        assert!(!s.is_open(at("2026-03-29T01:29:59Z")));
        assert!(s.is_open(at("2026-03-29T01:30:00Z")));
        assert_eq!(s.next_change(at("2026-03-29T00:00:00Z")), Some(at("2026-03-29T01:30:00Z")));
    }

    #[test]
    fn fall_back_lengthens_a_window_and_takes_the_first_repeated_time() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00–03:00 happens twice.
        let s = OpeningHours { windows: vec![window(&["sun"], "02:30", "03:30", "Europe/Berlin")] };
        // Start: the first 02:30 (CEST) = 00:30 UTC; end 03:30 CET = 02:30 UTC: two hours.
        assert!(!s.is_open(at("2026-10-25T00:29:59Z")));
        assert!(s.is_open(at("2026-10-25T00:30:00Z")));
        assert!(s.is_open(at("2026-10-25T02:29:59Z")));
        assert!(!s.is_open(at("2026-10-25T02:30:00Z")));
    }

    #[test]
    fn overnight_across_a_dst_change() {
        // New York, 2026-03-08 02:00 EST → 03:00 EDT. Saturday 22:00 EST → Sunday 06:00 EDT.
        let s = OpeningHours { windows: vec![window(&["sat"], "22:00", "06:00", "America/New_York")] };
        assert!(s.is_open(at("2026-03-08T03:00:00Z"))); // 22:00 EST Saturday
        assert!(s.is_open(at("2026-03-08T09:59:59Z"))); // 05:59:59 EDT Sunday
        assert!(!s.is_open(at("2026-03-08T10:00:00Z"))); // 06:00 EDT
        assert_eq!(s.next_change(at("2026-03-08T04:00:00Z")), Some(at("2026-03-08T10:00:00Z")));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(parse_time("9:00").unwrap_err().contains("9:00"));
        assert!(parse_time("24:00").is_err());
        assert!(parse_day("someday", &mut [false; 7]).unwrap_err().contains("someday"));
        assert!(parse_time_zone("Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
    }
}
