//! A condition followed per key from poll to poll: [`Conditions`] says
//! when a key starts firing and when it resolves, once each, with optional
//! hysteresis, and puts the condition on the event the watcher makes.

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::Event;

/// What a key of a [`Conditions`] just did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It entered the condition: the event starts it (`firing`).
    Firing,
    /// It left the condition: the event ends it (`resolved`).
    Resolved,
}

/// One condition kind (`over-max-lag`, `link-down`) followed for every key
/// it may hold for (a stream and group, a client id, a rule name).
///
/// Per poll, [`observe`](Self::observe) each key seen with whether the
/// condition holds for it; then [`finish`](Self::finish) resolves the keys
/// that were firing and not seen this poll. Each returns the event to
/// report, made by the watcher's closure, with the condition (kind, key as
/// text, firing or resolved, the runbook if any) put on it. Only
/// transitions make events: a key that keeps holding makes none.
///
/// ```
/// use lookout_watcher::{ConditionState, Conditions, Event, Level, Transition};
///
/// // In the watcher's state: fire after 2 polls over, resolve after 1 under.
/// let mut over = Conditions::new("over-max-lag").with_hysteresis(2, 1);
///
/// let mut poll = |lags: &[(&str, u64)]| {
///     let mut events = Vec::new();
///     for &(group, lag) in lags {
///         events.extend(over.observe(group.to_string(), lag > 100, |t| match t {
///             Transition::Firing => Event::new(Level::Warn, format!("{group} is {lag} behind")),
///             Transition::Resolved => Event::new(Level::Info, format!("{group} caught up")),
///         }));
///     }
///     // A group no longer reported resolves if it was firing.
///     events.extend(over.finish(|group| Event::new(Level::Info, format!("{group} is gone"))));
///     events.iter().map(|e| e.msg.clone()).collect::<Vec<_>>()
/// };
///
/// assert!(poll(&[("jobs/workers", 500)]).is_empty()); // 1 poll over: not yet
/// assert_eq!(poll(&[("jobs/workers", 600)]), ["jobs/workers is 600 behind"]);
/// assert!(poll(&[("jobs/workers", 700)]).is_empty()); // still firing: said once
/// assert_eq!(poll(&[("jobs/workers", 3)]), ["jobs/workers caught up"]);
///
/// // Each event carries the condition: kind, key as text, firing or resolved.
/// let mut link = Conditions::new("master-link-down");
/// let e = link.observe("master_link_status", true, |_| Event::new(Level::Error, "link down"));
/// let c = e.unwrap().condition.unwrap();
/// assert_eq!(
///     (c.kind.as_str(), c.key.as_str(), c.state),
///     ("master-link-down", "master_link_status", ConditionState::Firing)
/// );
/// ```
#[derive(Clone)]
pub struct Conditions<K> {
    /// The condition's stable name, put on every event.
    kind: String,
    /// Renders a key as the condition's key text.
    key_text: fn(&K) -> String,
    /// Polls in a row holding before a key fires (at least 1).
    enter_after: u32,
    /// Polls in a row not holding before a firing key resolves (at least 1).
    leave_after: u32,
    /// Put on firing and resolved events, when a setting names one.
    runbook: Option<String>,
    /// The keys firing or on their way in or out; a key neither firing nor
    /// counting towards firing is not kept.
    keys: BTreeMap<K, Track>,
    /// Counts calls to `finish`: a key observed since the last one carries
    /// the current value.
    poll: u64,
}

/// One key's state.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Track {
    firing: bool,
    /// Polls in a row against `firing` (holding while not firing, not
    /// holding while firing).
    streak: u32,
    /// The `poll` it was last observed in.
    seen: u64,
}

impl<K: Ord + Clone> std::fmt::Debug for Conditions<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conditions")
            .field("kind", &self.kind)
            .field("enter_after", &self.enter_after)
            .field("leave_after", &self.leave_after)
            .field("runbook", &self.runbook)
            .field(
                "firing",
                &self
                    .firing()
                    .map(|k| (self.key_text)(k))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<K: Ord + Clone + Display> Conditions<K> {
    /// The condition `kind` (1-64 bytes of `[a-z0-9-_.]`, stable across
    /// versions: alerts are grouped and silenced by it), keys shown with
    /// their `Display`; no hysteresis: a key fires on the first poll it
    /// holds and resolves on the first it does not.
    pub fn new(kind: &str) -> Self {
        Self::with_key_text(kind, |k| k.to_string())
    }
}

impl<K: Ord + Clone> Conditions<K> {
    /// Like [`new`](Conditions::new), for keys without `Display` (a tuple):
    /// `key_text` renders one as the condition's key,
    /// `|(stream, group)| format!("{stream}/{group}")`.
    pub fn with_key_text(kind: &str, key_text: fn(&K) -> String) -> Self {
        Conditions {
            kind: kind.to_string(),
            key_text,
            enter_after: 1,
            leave_after: 1,
            runbook: None,
            keys: BTreeMap::new(),
            poll: 0,
        }
    }

    /// Fires a key only after `enter_after_polls` polls in a row holding,
    /// and resolves it only after `leave_after_polls` polls in a row not
    /// holding (0 counts as 1). A key that disappears while firing resolves
    /// at once.
    #[must_use]
    pub fn with_hysteresis(mut self, enter_after_polls: u32, leave_after_polls: u32) -> Self {
        self.enter_after = enter_after_polls.max(1);
        self.leave_after = leave_after_polls.max(1);
        self
    }

    /// Puts this runbook URL (http or https) on every event of the condition.
    #[must_use]
    pub fn with_runbook(mut self, url: Option<String>) -> Self {
        self.runbook = url;
        self
    }

    /// The condition's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `key` as the condition's key text.
    pub fn key_text(&self, key: &K) -> String {
        (self.key_text)(key)
    }

    /// Whether `key` is firing.
    pub fn is_firing(&self, key: &K) -> bool {
        self.keys.get(key).is_some_and(|t| t.firing)
    }

    /// The keys firing, in order.
    pub fn firing(&self) -> impl Iterator<Item = &K> {
        self.keys.iter().filter(|(_, t)| t.firing).map(|(k, _)| k)
    }

    /// Records whether the condition holds for `key` this poll; the
    /// transition, if this poll makes one (the state changes only here and
    /// in `finish`). [`observe`](Self::observe) is this plus the event.
    pub fn update(&mut self, key: K, holds: bool) -> Option<Transition> {
        let poll = self.poll;
        let (enter_after, leave_after) = (self.enter_after, self.leave_after);
        let track = self.keys.entry(key.clone()).or_insert(Track {
            firing: false,
            streak: 0,
            seen: poll,
        });
        track.seen = poll;
        let transition = if holds == track.firing {
            track.streak = 0;
            None
        } else {
            track.streak += 1;
            let needed = if track.firing {
                leave_after
            } else {
                enter_after
            };
            if track.streak >= needed {
                track.firing = holds;
                track.streak = 0;
                Some(if holds {
                    Transition::Firing
                } else {
                    Transition::Resolved
                })
            } else {
                None
            }
        };
        if !track.firing && track.streak == 0 {
            self.keys.remove(&key);
        }
        transition
    }

    /// [`update`](Self::update), and on a transition the event `make`
    /// builds for it, with the condition put on it.
    pub fn observe(
        &mut self,
        key: K,
        holds: bool,
        make: impl FnOnce(Transition) -> Event,
    ) -> Option<Event> {
        let transition = self.update(key.clone(), holds)?;
        Some(self.attach(make(transition), &key, transition))
    }

    /// Ends the poll: every key not observed since the last `finish` is
    /// forgotten, and those of them that were firing resolve, each with the
    /// event `make` builds for it (in key order). Call it once per poll,
    /// after the `observe` calls; skip it for a poll that could not see the
    /// keys at all (the data was missing), so they are not taken for gone.
    pub fn finish(&mut self, mut make: impl FnMut(&K) -> Event) -> Vec<Event> {
        let poll = self.poll;
        self.poll = self.poll.wrapping_add(1);
        let gone: Vec<K> = self
            .keys
            .iter()
            .filter(|(_, t)| t.seen != poll)
            .map(|(k, _)| k.clone())
            .collect();
        let mut events = Vec::new();
        for key in gone {
            if self.keys.remove(&key).is_some_and(|t| t.firing) {
                events.push(self.attach(make(&key), &key, Transition::Resolved));
            }
        }
        events
    }

    /// Resolves `key` now if it is firing (whatever the hysteresis says):
    /// the event `make` builds, with the condition on it.
    pub fn resolve(&mut self, key: &K, make: impl FnOnce() -> Event) -> Option<Event> {
        let track = self.keys.remove(key)?;
        track
            .firing
            .then(|| self.attach(make(), key, Transition::Resolved))
    }

    /// Forgets every key without an event (the watcher was reconfigured
    /// and its conditions mean something else now).
    pub fn clear(&mut self) {
        self.keys.clear();
    }

    /// `event` with this condition's kind, `key` and `transition` on it.
    fn attach(&self, event: Event, key: &K, transition: Transition) -> Event {
        let key = (self.key_text)(key);
        let event = match transition {
            Transition::Firing => event.firing(&self.kind, &key),
            Transition::Resolved => event.resolved(&self.kind, &key),
        };
        match &self.runbook {
            Some(url) => event.runbook(url),
            None => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConditionState, Level};

    /// The event's condition as `(kind, key, state, runbook)`.
    fn condition(e: &Event) -> (&str, &str, ConditionState, Option<&str>) {
        let c = e.condition.as_ref().expect("a condition");
        (&c.kind, &c.key, c.state, c.runbook.as_deref())
    }

    fn msgs(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.msg.as_str()).collect()
    }

    fn ev(t: Transition) -> Event {
        match t {
            Transition::Firing => Event::new(Level::Warn, "on"),
            Transition::Resolved => Event::new(Level::Info, "off"),
        }
    }

    #[test]
    fn fires_once_and_resolves_once() {
        let mut c = Conditions::new("k");
        assert_eq!(c.update("a", false), None);
        assert_eq!(c.update("a", true), Some(Transition::Firing));
        assert_eq!(c.update("a", true), None);
        assert!(c.is_firing(&"a"));
        assert_eq!(c.update("a", false), Some(Transition::Resolved));
        assert_eq!(c.update("a", false), None);
        assert!(!c.is_firing(&"a"));
        assert_eq!(c.update("a", true), Some(Transition::Firing));
    }

    #[test]
    fn observe_makes_events_only_on_transitions() {
        let mut c = Conditions::new("k");
        assert!(c.observe(1u32, false, ev).is_none());
        assert_eq!(c.observe(1, true, ev).unwrap().msg, "on");
        assert!(c.observe(1, true, ev).is_none());
        assert_eq!(c.observe(1, false, ev).unwrap().msg, "off");
    }

    #[test]
    fn events_carry_the_condition() {
        let mut c: Conditions<(String, String)> =
            Conditions::with_key_text("over-max-lag", |(s, g)| format!("{s}/{g}"));
        let key = || ("jobs".to_string(), "workers".to_string());
        let on = c.observe(key(), true, ev).unwrap();
        assert_eq!(
            condition(&on),
            ("over-max-lag", "jobs/workers", ConditionState::Firing, None)
        );
        let off = c.observe(key(), false, ev).unwrap();
        assert_eq!(
            condition(&off),
            (
                "over-max-lag",
                "jobs/workers",
                ConditionState::Resolved,
                None
            )
        );
        // Gone while firing, and resolved by hand: resolved too.
        c.observe(key(), true, ev);
        assert!(c.finish(|_| unreachable!()).is_empty());
        let gone = c.finish(|_| Event::new(Level::Info, "gone"));
        assert_eq!(condition(&gone[0]).2, ConditionState::Resolved);
        c.observe(key(), true, ev);
        let by_hand = c.resolve(&key(), || Event::new(Level::Info, "x")).unwrap();
        assert_eq!(condition(&by_hand).2, ConditionState::Resolved);
    }

    #[test]
    fn the_runbook_goes_on_every_event() {
        let url = "https://runbooks.example/lag";
        let mut c = Conditions::new("k").with_runbook(Some(url.to_string()));
        let on = c.observe("a", true, ev).unwrap();
        assert_eq!(
            condition(&on),
            ("k", "a", ConditionState::Firing, Some(url))
        );
        let off = c.observe("a", false, ev).unwrap();
        assert_eq!(condition(&off).3, Some(url));
    }

    #[test]
    fn hysteresis_counts_polls_in_a_row() {
        let mut c = Conditions::new("k").with_hysteresis(3, 2);
        assert_eq!(c.update("a", true), None);
        assert_eq!(c.update("a", true), None);
        assert_eq!(c.update("a", false), None); // the run is broken
        assert_eq!(c.update("a", true), None);
        assert_eq!(c.update("a", true), None);
        assert_eq!(c.update("a", true), Some(Transition::Firing));
        assert_eq!(c.update("a", false), None);
        assert_eq!(c.update("a", true), None); // still firing, run broken
        assert_eq!(c.update("a", false), None);
        assert_eq!(c.update("a", false), Some(Transition::Resolved));
        assert!(c.firing().next().is_none());
    }

    #[test]
    fn zero_polls_count_as_one() {
        let mut c = Conditions::new("k").with_hysteresis(0, 0);
        assert_eq!(c.update("a", true), Some(Transition::Firing));
        assert_eq!(c.update("a", false), Some(Transition::Resolved));
    }

    #[test]
    fn finish_resolves_keys_gone_while_firing() {
        let mut c = Conditions::new("k").with_hysteresis(1, 5);
        c.update("a", true);
        c.update("b", true);
        c.update("c", false);
        assert!(c.finish(|k| Event::new(Level::Info, *k)).is_empty());
        c.update("b", true);
        // "a" was firing and is not reported: resolved at once, despite the
        // hysteresis; "c" was never firing: forgotten silently.
        assert_eq!(
            msgs(&c.finish(|k| Event::new(Level::Info, format!("{k} gone")))),
            ["a gone"]
        );
        assert_eq!(c.firing().collect::<Vec<_>>(), [&"b"]);
        assert!(c.finish(|k| Event::new(Level::Info, *k)).len() == 1);
        assert!(c.finish(|k| Event::new(Level::Info, *k)).is_empty());
    }

    #[test]
    fn a_pending_key_that_disappears_starts_over() {
        let mut c = Conditions::new("k").with_hysteresis(2, 1);
        assert_eq!(c.update("a", true), None);
        assert!(c.finish(|_| unreachable!()).is_empty());
        assert!(c.finish(|_| unreachable!()).is_empty());
        assert_eq!(c.update("a", true), None);
        assert_eq!(c.update("a", true), Some(Transition::Firing));
    }

    #[test]
    fn resolve_and_clear() {
        let mut c = Conditions::new("k");
        c.update("a", true);
        assert!(c.resolve(&"b", || unreachable!()).is_none());
        assert_eq!(
            c.resolve(&"a", || Event::new(Level::Info, "x"))
                .unwrap()
                .msg,
            "x"
        );
        assert!(c.resolve(&"a", || unreachable!()).is_none());
        c.update("a", true);
        c.clear();
        assert!(!c.is_firing(&"a"));
        assert!(c.finish(|_| unreachable!()).is_empty());
    }

    #[test]
    fn tuple_keys_render_with_a_function() {
        let c: Conditions<(String, String)> =
            Conditions::with_key_text("over-max-lag", |(s, g)| format!("{s}/{g}"));
        assert_eq!(c.kind(), "over-max-lag");
        assert_eq!(
            c.key_text(&("jobs".into(), "workers".into())),
            "jobs/workers"
        );
    }

    #[test]
    fn keeps_only_keys_firing_or_pending() {
        let mut c = Conditions::new("k").with_hysteresis(2, 1);
        for i in 0..1000u32 {
            c.update(i, false);
        }
        assert!(c.keys.is_empty());
        c.update(1, true);
        assert_eq!(c.keys.len(), 1);
    }
}
