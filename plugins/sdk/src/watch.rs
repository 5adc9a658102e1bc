//! Writing a watcher as a plain Rust type: [`Watch`], and [`export!`] to
//! make it the component's `lookout:watcher/plugin` implementation.
//!
//! [`export!`]: crate::export

use crate::{Event, Manifest, Needs, Setting, Slot, Snapshot};

/// A watcher: its manifest, how settings build it, and what it makes of
/// each poll. The state between polls is the value itself.
///
/// [`export!`](crate::export) turns a `Watch` into the exported interface:
///
/// - `describe` returns [`Watch::manifest`];
/// - `configure` builds a fresh watcher with [`Watch::from_settings`] and,
///   when that succeeds, replaces the one kept so far and returns its
///   [`Watch::needs`]; on error the old one (and its state) stays;
/// - `observe` hands the snapshot to the kept watcher. One that was never
///   configured is first built from the defaults, `from_settings(&[])`; if
///   the defaults are rejected, nothing is reported until `configure`
///   succeeds.
pub trait Watch: Sized + 'static {
    /// What `describe` returns: name, version, config keys, needs, cadence
    /// (see [`Manifest::new`] for a builder that runs every poll).
    fn manifest() -> Manifest;

    /// A watcher with no state yet, from the settings handed to `configure`
    /// (absent keys take their defaults). The error names the offending
    /// key, see [`invalid`](crate::invalid).
    fn from_settings(settings: &[Setting]) -> Result<Self, String>;

    /// Looks at one poll, updating the state; the events to report.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event>;

    /// What these settings need of the manifest's needs, if less (`rules`
    /// reads only the INFO fields its rules name): `configure` returns it
    /// and the host reads and hands over only what both name, never more
    /// than the manifest. `None` (the default) keeps the manifest's.
    fn needs(&self) -> Option<Needs> {
        None
    }
}

/// The watcher an exported component keeps between calls, with the
/// `configure` and `observe` rules listed on [`Watch`].
///
/// [`export!`](crate::export) keeps one in a `static`. A test can make its
/// own, to drive a watcher the way the host does without sharing state with
/// other tests:
///
/// ```
/// # use lookout_watcher::{Event, Manifest, Needs, Setting, Snapshot, Watch};
/// # struct Counter(u64);
/// # impl Watch for Counter {
/// #     fn manifest() -> Manifest { unimplemented!() }
/// #     fn from_settings(_: &[Setting]) -> Result<Self, String> { Ok(Counter(0)) }
/// #     fn observe(&mut self, _: &Snapshot) -> Vec<Event> { self.0 += 1; Vec::new() }
/// # }
/// use lookout_watcher::Exported;
/// use lookout_watcher::testing::SnapshotBuilder;
///
/// let glue = Exported::<Counter>::new();
/// glue.configure(&[]).unwrap();
/// assert!(glue.observe(&SnapshotBuilder::new().build()).is_empty());
/// ```
#[derive(Debug)]
pub struct Exported<W> {
    /// Empty until the first call; `Some(None)` when the defaults were
    /// rejected.
    slot: Slot<Option<W>>,
}

impl<W> Exported<W> {
    /// Nothing kept yet.
    pub const fn new() -> Self {
        Exported { slot: Slot::new() }
    }
}

impl<W> Default for Exported<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Watch> Exported<W> {
    /// `configure`: a fresh watcher from `settings` and its
    /// [`Watch::needs`], or the error (keeping the watcher there was).
    pub fn configure(&self, settings: &[Setting]) -> Result<Option<Needs>, String> {
        let watcher = W::from_settings(settings)?;
        let needs = watcher.needs();
        self.slot.set(Some(watcher));
        Ok(needs)
    }

    /// `observe`: the kept watcher's events, built from the defaults first
    /// if it was never configured.
    pub fn observe(&self, snapshot: &Snapshot) -> Vec<Event> {
        self.slot.with(
            || W::from_settings(&[]).ok(),
            |w| w.as_mut().map(|w| w.observe(snapshot)).unwrap_or_default(),
        )
    }
}

/// Exports a type implementing [`Watch`] as the component's
/// `lookout:watcher/plugin` implementation: `lookout_watcher::export!(MyWatcher);`.
///
/// It implements [`Guest`](crate::Guest) for the type, keeping one watcher
/// in a `static` [`Exported`], and on wasm targets exports it with
/// [`export_watcher!`](crate::export_watcher). Natively nothing is exported
/// (the names are not valid symbols in a native shared library), but the
/// `Guest` impl is there, so unit tests can call it:
/// `<MyWatcher as Guest>::observe(snapshot)`. Those calls share the one
/// `static` watcher, like the host's calls do.
///
/// Invoke it once, in the watcher crate, with the type's name.
#[macro_export]
macro_rules! export {
    ($watch:ident) => {
        const _: () = {
            static EXPORTED: $crate::Exported<$watch> = $crate::Exported::new();

            impl $crate::Guest for $watch {
                fn describe() -> $crate::Manifest {
                    <$watch as $crate::Watch>::manifest()
                }

                fn configure(
                    settings: ::std::vec::Vec<$crate::Setting>,
                ) -> ::std::result::Result<
                    ::std::option::Option<$crate::Needs>,
                    ::std::string::String,
                > {
                    EXPORTED.configure(&settings)
                }

                fn observe(snapshot: $crate::Snapshot) -> ::std::vec::Vec<$crate::Event> {
                    EXPORTED.observe(&snapshot)
                }
            }

            #[cfg(target_family = "wasm")]
            $crate::export_watcher!($watch);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SnapshotBuilder, setting};
    use crate::{Cadence, Guest, Level, Needs, Settings, invalid};

    /// Counts polls, from `start` (>= 0, default 0).
    #[derive(Debug)]
    struct Counter {
        polls: i64,
    }

    impl Watch for Counter {
        fn manifest() -> Manifest {
            Manifest {
                name: "counter".to_string(),
                version: "1.2.3".to_string(),
                description: "counts polls".to_string(),
                config: Vec::new(),
                needs: Needs::info(&[]),
                cadence: Cadence::EveryPoll,
            }
        }

        fn from_settings(settings: &[Setting]) -> Result<Self, String> {
            let start = Settings::new(settings).integer("start", 0)?;
            if start < 0 {
                return Err(invalid("start", ">= 0", start));
            }
            Ok(Counter { polls: start })
        }

        fn observe(&mut self, _snapshot: &Snapshot) -> Vec<Event> {
            self.polls += 1;
            vec![Event::new(Level::Debug, "poll").field("polls", self.polls)]
        }
    }

    /// A watcher whose defaults are rejected: it needs `start`.
    struct Broken;

    impl Watch for Broken {
        fn manifest() -> Manifest {
            Counter::manifest()
        }

        fn from_settings(settings: &[Setting]) -> Result<Self, String> {
            match Settings::new(settings).get("start") {
                Some(_) => Ok(Broken),
                None => Err("key `start` is required".to_string()),
            }
        }

        fn observe(&mut self, _snapshot: &Snapshot) -> Vec<Event> {
            vec![Event::new(Level::Info, "ok")]
        }
    }

    crate::export!(Counter);

    fn polls(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .map(|e| e.get("polls").and_then(crate::Value::as_i64).unwrap())
            .collect()
    }

    #[test]
    fn unconfigured_uses_the_defaults_and_keeps_state() {
        let glue = Exported::<Counter>::new();
        let snap = SnapshotBuilder::new().build();
        assert_eq!(polls(&glue.observe(&snap)), [1]);
        assert_eq!(polls(&glue.observe(&snap)), [2]);
    }

    #[test]
    fn configure_replaces_the_state_and_a_rejection_keeps_it() {
        let glue = Exported::<Counter>::new();
        let snap = SnapshotBuilder::new().build();
        glue.configure(&[setting("start", 10i64)]).unwrap();
        assert_eq!(polls(&glue.observe(&snap)), [11]);
        assert_eq!(
            glue.configure(&[setting("start", -1i64)]).unwrap_err(),
            "key `start` must be >= 0, got -1"
        );
        assert_eq!(polls(&glue.observe(&snap)), [12]);
        glue.configure(&[]).unwrap();
        assert_eq!(polls(&glue.observe(&snap)), [1]);
    }

    #[test]
    fn rejected_defaults_report_nothing_until_configured() {
        let glue = Exported::<Broken>::new();
        let snap = SnapshotBuilder::new().build();
        assert!(glue.observe(&snap).is_empty());
        assert!(glue.observe(&snap).is_empty());
        glue.configure(&[setting("start", 1i64)]).unwrap();
        assert_eq!(glue.observe(&snap).len(), 1);
    }

    /// Keeps only the first INFO field when `narrow` is set.
    struct Narrow(bool);

    impl Watch for Narrow {
        fn manifest() -> Manifest {
            Manifest::new("narrow", "1", "").with_needs(Needs::info(&["a", "b"]))
        }

        fn from_settings(settings: &[Setting]) -> Result<Self, String> {
            Ok(Narrow(Settings::new(settings).boolean("narrow", false)?))
        }

        fn observe(&mut self, _snapshot: &Snapshot) -> Vec<Event> {
            Vec::new()
        }

        fn needs(&self) -> Option<Needs> {
            self.0.then(|| Needs::info(&["a"]))
        }
    }

    #[test]
    fn configure_returns_the_narrowed_needs() {
        let glue = Exported::<Narrow>::new();
        assert_eq!(glue.configure(&[]), Ok(None));
        assert_eq!(
            glue.configure(&[setting("narrow", true)]),
            Ok(Some(Needs::info(&["a"])))
        );
        assert_eq!(Exported::<Counter>::new().configure(&[]), Ok(None));
    }

    #[test]
    fn export_macro_implements_guest() {
        assert_eq!(Counter::describe(), Counter::manifest());
        let snap = SnapshotBuilder::new().build();
        assert!(Counter::configure(vec![setting("start", "x")]).is_err());
        Counter::configure(vec![setting("start", 5i64)]).unwrap();
        // `observe` is also a `Watch` method: name the trait.
        assert_eq!(polls(&<Counter as Guest>::observe(snap.clone())), [6]);
        assert_eq!(polls(&<Counter as Guest>::observe(snap)), [7]);
    }
}
