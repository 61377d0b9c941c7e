//! Asking a running server to stop: [`StopHandle`] (from any thread) and [`StopOnSignals`]
//! (on SIGINT/SIGTERM).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sysv_mq::protocol;
use sysv_mq::{MessageQueue, MqError, Wait};

use super::ServerError;

/// A handle that asks a running server to stop; cheap to clone and send to other threads.
#[derive(Debug, Clone)]
pub struct StopHandle {
    pub(super) queue: MessageQueue,
    pub(super) stop: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the server to stop: sets the stop flag and puts a stop message on the queue (without
    /// blocking, retrying while the queue is full) so that a blocked receive wakes up. Returns
    /// quietly if the queue is already gone.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        loop {
            match self.queue.send(protocol::STOP_TYPE, b"", Wait::NoWait) {
                Err(MqError::Full) | Err(MqError::Interrupted) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                // Sent, or the queue is gone (then the server is stopping anyway).
                _ => return,
            }
        }
    }
}

/// A thread that turns SIGINT and SIGTERM into [`StopHandle::request_stop`]. Dropping it
/// unregisters the handlers and joins the thread.
pub struct StopOnSignals {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl StopOnSignals {
    /// Installs the handlers and starts the thread.
    pub fn install(stop: StopHandle) -> Result<Self, ServerError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Signals)?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    stop.request_stop();
                }
            })
            .map_err(ServerError::Thread)?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for StopOnSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopOnSignals").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use sysv_mq::MqError;

    use super::super::tests::{private_config, server_on};
    use crate::server::{Mode, StopCause};

    #[test]
    fn stop_handle_stops_a_waiting_server() {
        for mode in [Mode::Inline, Mode::Spawn, Mode::Pool] {
            let (mut config, q) = private_config(mode);
            // Eight idle pool workers, all blocked in msgrcv: one stop message must wake all.
            config.workers = 8;
            let server = server_on(config, q);
            let stop = server.stop_handle();
            let t = std::thread::spawn(move || server.run(|_, _| {}));
            stop.request_stop();
            let summary = t.join().unwrap().unwrap();
            assert_eq!(summary.served, 0, "{mode}");
            assert_eq!(summary.cause, StopCause::Requested, "{mode}");
            assert!(matches!(q.stat(), Err(MqError::Removed)), "{mode}");
        }
    }
}
