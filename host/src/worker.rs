//! The watcher thread: owns every loaded watcher and runs their calls off
//! the async runtime. Synchronous WASI host calls (a watcher writing to
//! stderr, say) block on their own runtime, which must not happen on a
//! thread that is driving async tasks.

use std::sync::Arc;
use std::sync::mpsc;

use anyhow::{Result, anyhow};
use tokio::sync::oneshot;

use crate::plugin::bindings::lookout::watcher::types as wit;
use crate::plugin::{CallError, Watcher};
use crate::probe::Snapshot;

/// What one watcher returned for one snapshot.
pub struct Report {
    /// File name of the watcher (`NAME` of `NAME.wasm`).
    pub watcher: String,
    /// Its manifest name, the envelope `target`.
    pub target: String,
    /// Its events, or why the call failed (the watcher is then disabled).
    pub result: Result<Vec<wit::Event>, CallError>,
}

struct Job {
    instance: Arc<str>,
    snapshot: Arc<Snapshot>,
    reply: oneshot::Sender<Vec<Report>>,
}

/// Handle to the watcher thread; dropping it stops the thread.
pub struct WatcherThread {
    jobs: mpsc::Sender<Job>,
}

impl WatcherThread {
    /// Moves `watchers` onto a new thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(watchers: Vec<Watcher>) -> Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("lookout-watchers".into())
            .spawn(move || serve(watchers, &inbox))?;
        Ok(Self { jobs })
    }

    /// Calls every healthy watcher with `snapshot`, in load order.
    ///
    /// # Errors
    /// The watcher thread is gone.
    pub async fn observe(
        &self,
        instance: Arc<str>,
        snapshot: Arc<Snapshot>,
    ) -> Result<Vec<Report>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                instance,
                snapshot,
                reply,
            })
            .map_err(|_| anyhow!("watcher thread stopped"))?;
        answer.await.map_err(|_| anyhow!("watcher thread stopped"))
    }
}

fn serve(mut watchers: Vec<Watcher>, inbox: &mpsc::Receiver<Job>) {
    while let Ok(job) = inbox.recv() {
        let reports = watchers
            .iter_mut()
            .filter(|w| w.failed.is_none())
            .map(|w| Report {
                watcher: w.name.clone(),
                target: w.manifest.name.clone(),
                result: w.observe(&job.instance, &job.snapshot),
            })
            .collect();
        // The poll may have been cancelled by shutdown; nobody to tell then.
        let _ = job.reply.send(reports);
    }
}
