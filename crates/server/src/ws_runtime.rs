//! The websocket fan-out's own threads.
//!
//! Every tick the hub hands one frame to every websocket task, and those tasks then write
//! it to thousands of sockets. On the runtime that also serves HTTP, a `PUT /api/pixel`
//! that arrives during such a burst waits in the same run queues behind the writes
//! (measured: p99 55-200 ms at 5,000-15,000 clients). Upgraded websockets are therefore
//! moved to a runtime of their own (`--ws-threads`); request handling keeps its threads,
//! and the kernel's scheduler shares the cores between the two, so the answer to a
//! placement waits at most a scheduler slice instead of a whole fan-out.
//!
//! The sockets stay registered with the main runtime's I/O driver (hyper hands over the
//! upgraded connection as it is); only the tasks that write to them run here.

use std::sync::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};

/// Where websocket tasks run.
pub struct WsRuntime {
    /// The runtime's handle (the main runtime's when there is no separate one).
    handle: Handle,
    /// The separate runtime, owned so that it is shut down with the server.
    own: Mutex<Option<Runtime>>,
}

impl WsRuntime {
    /// A runtime of `threads` worker threads at niceness `nice`; 0 threads runs websocket
    /// tasks on the current runtime, as before. Must be called within a runtime.
    pub fn new(threads: usize, nice: i32) -> std::io::Result<Self> {
        if threads == 0 {
            return Ok(Self {
                handle: Handle::current(),
                own: Mutex::new(None),
            });
        }
        let rt = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("rplace-ws")
            .on_thread_start(move || {
                // Per thread on Linux (a thread id is a pid to setpriority). Failing to
                // lower a priority only costs the latency it would have saved.
                let tid = rustix::thread::gettid();
                if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
                    tracing::warn!(error = %e, nice, "cannot lower the websocket threads' priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(Self {
            handle: rt.handle().clone(),
            own: Mutex::new(Some(rt)),
        })
    }

    /// Where to spawn websocket tasks.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops the separate runtime's threads without waiting (callable from async code);
    /// tasks still on it are dropped.
    pub fn shutdown(&self) {
        let rt = self.own.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rt) = rt {
            rt.shutdown_background();
        }
    }
}

impl Drop for WsRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside async code panics; this never does.
        self.shutdown();
    }
}
