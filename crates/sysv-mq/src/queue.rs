//! System V message queues, safely, over `libc`: the only module of the crate with `unsafe` code.
//! It also lists every System V IPC object of the namespace and removes one by id, which is
//! how a sandbox's leftovers are cleared.
//!
//! A [`MessageQueue`] is a handle on a kernel queue named by a key (`key_t`). The wire format
//! is the one of `msgsnd(2)`: a native `long` message type followed by the raw text, with no
//! terminator; the size passed to the kernel counts the text only. That is exactly what
//! Python's `sysv_ipc` sends and expects, so a Rust peer and a Python peer interoperate.
//!
//! Errors are typed ([`MqError`]): the ones a caller acts on (no such queue, queue removed while
//! waiting, interrupted by a signal, message too big, queue full, nothing to receive) have
//! their own variants; anything else keeps its `errno`. Blocking calls are *not* retried on
//! `EINTR` here: a server needs the interruption to notice a shutdown request. Callers that
//! just want the message use [`MessageQueue::receive_retrying`].

use std::io;

/// The largest message text this module will receive in one call (bytes). Linux caps a
/// message at `msgmax` (8192 by default, tunable up to `INT_MAX`); messages longer than the
/// buffer are truncated with `MSG_NOERROR` and flagged as [`Message::truncated`].
pub const RECEIVE_BUFFER: usize = 65_536;

/// Typed failures of the queue calls.
#[derive(Debug, thiserror::Error)]
pub enum MqError {
    /// `msgget` found no queue with this key (`ENOENT`).
    #[error("no message queue with key {key}")]
    NotFound {
        /// The key asked for.
        key: i32,
    },
    /// `IPC_EXCL` was asked and a queue with this key already exists (`EEXIST`).
    #[error("a message queue with key {key} already exists")]
    AlreadyExists {
        /// The key asked for.
        key: i32,
    },
    /// The queue's permissions refuse this process (`EACCES`/`EPERM`).
    #[error("permission denied on message queue ({op})")]
    PermissionDenied {
        /// The call refused.
        op: &'static str,
    },
    /// The queue was removed, before or while this call waited (`EIDRM`, or `EINVAL` on an id
    /// that no longer exists).
    #[error("the message queue was removed")]
    Removed,
    /// A signal handler ran while the call was blocked (`EINTR`); the call did nothing.
    #[error("interrupted by a signal")]
    Interrupted,
    /// The text is longer than the queue accepts (`EINVAL` from `msgsnd` with a size over
    /// `msgmax`, or larger than the caller's limit).
    #[error("message of {len} bytes is too big (limit {limit})")]
    TooBig {
        /// Length of the text.
        len: usize,
        /// The largest accepted.
        limit: usize,
    },
    /// The queue is full and the caller asked not to wait (`EAGAIN` on send).
    #[error("the message queue is full")]
    Full,
    /// No message of the wanted type is queued and the caller asked not to wait (`ENOMSG`).
    #[error("no message of the requested type is waiting")]
    NoMessage,
    /// A message type outside `1..=i64::MAX` was given to `send`.
    #[error("invalid message type {mtype}: types start at 1")]
    InvalidType {
        /// The type given.
        mtype: i64,
    },
    /// Any other failure, with the call that failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, MqError>;

/// Whether a call may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until the call can complete (the default of `sysv_ipc`).
    Block,
    /// Fail at once with [`MqError::Full`] or [`MqError::NoMessage`] (`IPC_NOWAIT`).
    NoWait,
}

/// Which message `receive` takes: the `msgtyp` argument of `msgrcv(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// The message at the head of the queue, whatever its type (`msgtyp = 0`).
    Any,
    /// The first message of exactly this type (`msgtyp > 0`).
    Exact(i64),
    /// The first message of the lowest type that is at most this one (`msgtyp < 0`): with
    /// `AtMost(2)` every queued type-1 message comes before any type-2 message.
    AtMost(i64),
}

impl Selector {
    fn msgtyp(self) -> libc::c_long {
        match self {
            Selector::Any => 0,
            Selector::Exact(t) => t as libc::c_long,
            Selector::AtMost(t) => -(t as libc::c_long),
        }
    }
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message type (`mtype`).
    pub mtype: i64,
    /// The text, exactly as sent (possibly cut to the receive limit, see `truncated`).
    pub body: Vec<u8>,
    /// True when the text filled the whole receive buffer, so it may have been cut.
    pub truncated: bool,
}

/// A snapshot of a queue's state (`msgctl(IPC_STAT)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages currently queued.
    pub messages: u64,
    /// Bytes of text currently queued.
    pub bytes: u64,
    /// The most bytes the queue may hold (`msg_qbytes`).
    pub max_bytes: u64,
    /// Pid of the last sender, as this process's PID namespace sees it (0 if none).
    pub last_send_pid: i32,
    /// Pid of the last receiver (0 if none).
    pub last_receive_pid: i32,
    /// When a message was last sent (`msg_stime`, seconds since the epoch; 0 if never).
    pub last_send_time: i64,
    /// When a message was last taken (`msg_rtime`, seconds since the epoch; 0 if never). A
    /// receive that finds nothing leaves it alone.
    pub last_receive_time: i64,
    /// Owner uid of the queue.
    pub owner_uid: u32,
    /// Permission bits of the queue.
    pub mode: u32,
}

/// A handle on a System V message queue. Dropping it leaves the queue in the kernel;
/// call [`MessageQueue::remove`] to delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageQueue {
    id: i32,
    key: i32,
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

impl MessageQueue {
    /// Opens the existing queue with this key, like `sysv_ipc.MessageQueue(key)`.
    pub fn open(key: i32) -> Result<Self> {
        Self::get(key, 0)
    }

    /// Opens the queue with this key, creating it with `mode` (for example `0o600`) if needed.
    pub fn create(key: i32, mode: u32) -> Result<Self> {
        Self::get(key, libc::IPC_CREAT | (mode & 0o777) as libc::c_int)
    }

    /// Creates a new queue with this key; fails with [`MqError::AlreadyExists`] if one exists.
    pub fn create_exclusive(key: i32, mode: u32) -> Result<Self> {
        Self::get(
            key,
            libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int,
        )
    }

    /// Creates a queue that no key names (`IPC_PRIVATE`): handy for tests that must not
    /// collide with anything.
    pub fn create_private(mode: u32) -> Result<Self> {
        Self::get(libc::IPC_PRIVATE, (mode & 0o777) as libc::c_int)
    }

    /// Whether a queue with this key exists (and is visible to this process).
    pub fn exists(key: i32) -> bool {
        !matches!(Self::open(key), Err(MqError::NotFound { .. }))
    }

    fn get(key: i32, flags: libc::c_int) -> Result<Self> {
        // SAFETY: msgget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::msgget(key, flags) };
        if id >= 0 {
            return Ok(Self { id, key });
        }
        let err = errno();
        Err(match err.raw_os_error() {
            Some(libc::ENOENT) => MqError::NotFound { key },
            Some(libc::EEXIST) => MqError::AlreadyExists { key },
            Some(libc::EACCES) | Some(libc::EPERM) => MqError::PermissionDenied { op: "msgget" },
            _ => MqError::Os {
                op: "msgget",
                source: err,
            },
        })
    }

    /// The kernel's id of the queue (what `ipcs -q` shows as `msqid`).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key the queue was opened with (`IPC_PRIVATE`, 0, for private queues).
    pub fn key(&self) -> i32 {
        self.key
    }

    /// Sends `body` with type `mtype`.
    pub fn send(&self, mtype: i64, body: &[u8], wait: Wait) -> Result<()> {
        if mtype < 1 {
            return Err(MqError::InvalidType { mtype });
        }
        let word = std::mem::size_of::<libc::c_long>();
        let mut buf = vec![0u8; word + body.len()];
        buf[..word].copy_from_slice(&(mtype as libc::c_long).to_ne_bytes());
        buf[word..].copy_from_slice(body);
        let flags = if wait == Wait::NoWait {
            libc::IPC_NOWAIT
        } else {
            0
        };
        // SAFETY: buf holds a long followed by body.len() bytes, which is the msgbuf layout
        // msgsnd reads; the kernel reads exactly word + body.len() bytes from it.
        let rc = unsafe { libc::msgsnd(self.id, buf.as_ptr().cast(), body.len(), flags) };
        if rc == 0 {
            return Ok(());
        }
        let err = errno();
        Err(match err.raw_os_error() {
            Some(libc::EAGAIN) => MqError::Full,
            Some(libc::EINTR) => MqError::Interrupted,
            Some(libc::EIDRM) => MqError::Removed,
            Some(libc::EACCES) => MqError::PermissionDenied { op: "msgsnd" },
            // EINVAL: the id is gone, or the size is over msgmax.
            Some(libc::EINVAL) => {
                if self.stat().is_err() {
                    MqError::Removed
                } else {
                    MqError::TooBig {
                        len: body.len(),
                        limit: max_message_size().unwrap_or(8192),
                    }
                }
            }
            _ => MqError::Os {
                op: "msgsnd",
                source: err,
            },
        })
    }

    /// Receives one message chosen by `selector`, taking at most [`RECEIVE_BUFFER`] bytes of
    /// text (longer texts are cut, never left stuck at the head of the queue).
    pub fn receive(&self, selector: Selector, wait: Wait) -> Result<Message> {
        self.receive_max(selector, RECEIVE_BUFFER, wait)
    }

    /// Like [`receive`](Self::receive) with a caller-chosen limit on the text.
    pub fn receive_max(&self, selector: Selector, max_len: usize, wait: Wait) -> Result<Message> {
        let mut flags = libc::MSG_NOERROR;
        if wait == Wait::NoWait {
            flags |= libc::IPC_NOWAIT;
        }
        self.msgrcv(selector.msgtyp(), max_len, flags)
    }

    /// A copy of the message at position `index` of the queue (0 is the oldest), left in
    /// place (`MSG_COPY`): how an observer sees which requests are still waiting without
    /// taking any. [`MqError::NoMessage`] past the last message; an [`MqError::Os`] with
    /// `ENOSYS` on a kernel built without `CONFIG_CHECKPOINT_RESTORE`.
    pub fn peek(&self, index: usize, max_len: usize) -> Result<Message> {
        let index = libc::c_long::try_from(index).map_err(|_| MqError::NoMessage)?;
        self.msgrcv(
            index,
            max_len,
            libc::MSG_COPY | libc::IPC_NOWAIT | libc::MSG_NOERROR,
        )
    }

    /// `msgrcv(2)` into a buffer of a long plus `max_len` bytes, decoded.
    fn msgrcv(&self, msgtyp: libc::c_long, max_len: usize, flags: libc::c_int) -> Result<Message> {
        let word = std::mem::size_of::<libc::c_long>();
        let mut buf = vec![0u8; word + max_len];
        // SAFETY: buf has room for a long plus max_len bytes, which is what msgrcv may write.
        let n = unsafe { libc::msgrcv(self.id, buf.as_mut_ptr().cast(), max_len, msgtyp, flags) };
        if n >= 0 {
            let n = n as usize;
            let mut raw = [0u8; std::mem::size_of::<libc::c_long>()];
            raw.copy_from_slice(&buf[..word]);
            // `c_long` is `i64` here but `i32` on 32-bit targets.
            #[allow(clippy::useless_conversion)]
            let mtype = i64::from(libc::c_long::from_ne_bytes(raw));
            buf.truncate(word + n);
            buf.drain(..word);
            return Ok(Message {
                mtype,
                body: buf,
                truncated: n == max_len && max_len > 0,
            });
        }
        let err = errno();
        Err(match err.raw_os_error() {
            Some(libc::ENOMSG) => MqError::NoMessage,
            Some(libc::EINTR) => MqError::Interrupted,
            Some(libc::EIDRM) | Some(libc::EINVAL) => MqError::Removed,
            Some(libc::EACCES) => MqError::PermissionDenied { op: "msgrcv" },
            _ => MqError::Os {
                op: "msgrcv",
                source: err,
            },
        })
    }

    /// Receives like [`receive`](Self::receive), retrying when a signal interrupts the wait.
    pub fn receive_retrying(&self, selector: Selector) -> Result<Message> {
        loop {
            match self.receive(selector, Wait::Block) {
                Err(MqError::Interrupted) => continue,
                other => return other,
            }
        }
    }

    /// Sends like [`send`](Self::send) (blocking), retrying when a signal interrupts the wait.
    pub fn send_retrying(&self, mtype: i64, body: &[u8]) -> Result<()> {
        loop {
            match self.send(mtype, body, Wait::Block) {
                Err(MqError::Interrupted) => continue,
                other => return other,
            }
        }
    }

    /// Reads the queue's statistics (`IPC_STAT`).
    pub fn stat(&self) -> Result<QueueStats> {
        // SAFETY: msqid_ds is plain old data; all-zero is a valid value of it.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds is a valid, writable msqid_ds for IPC_STAT to fill.
        let rc = unsafe { libc::msgctl(self.id, libc::IPC_STAT, &mut ds) };
        if rc != 0 {
            let err = errno();
            return Err(match err.raw_os_error() {
                Some(libc::EIDRM) | Some(libc::EINVAL) => MqError::Removed,
                Some(libc::EACCES) => MqError::PermissionDenied { op: "msgctl" },
                _ => MqError::Os {
                    op: "msgctl(IPC_STAT)",
                    source: err,
                },
            });
        }
        Ok(QueueStats {
            messages: ds.msg_qnum as u64,
            bytes: ds.__msg_cbytes,
            max_bytes: ds.msg_qbytes as u64,
            last_send_pid: ds.msg_lspid,
            last_receive_pid: ds.msg_lrpid,
            last_send_time: ds.msg_stime,
            last_receive_time: ds.msg_rtime,
            owner_uid: ds.msg_perm.uid,
            mode: (ds.msg_perm.mode as u32) & 0o777,
        })
    }

    /// Removes the queue from the kernel (`IPC_RMID`): blocked callers wake with
    /// [`MqError::Removed`]. Removing a queue that is already gone gives `Removed`.
    pub fn remove(&self) -> Result<()> {
        // SAFETY: IPC_RMID ignores the buffer argument, so a null pointer is allowed.
        let rc = unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
        if rc == 0 {
            return Ok(());
        }
        let err = errno();
        Err(match err.raw_os_error() {
            Some(libc::EIDRM) | Some(libc::EINVAL) => MqError::Removed,
            Some(libc::EPERM) | Some(libc::EACCES) => MqError::PermissionDenied { op: "msgctl" },
            _ => MqError::Os {
                op: "msgctl(IPC_RMID)",
                source: err,
            },
        })
    }
}

/// The kernel's largest message text (`/proc/sys/kernel/msgmax`) in this IPC namespace.
pub fn max_message_size() -> Option<usize> {
    read_sysctl("msgmax")
}

fn read_sysctl(name: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One line of `/proc/sysvipc/msg`: a queue alive in this IPC namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's key.
    pub key: i32,
    /// The queue's id.
    pub id: i32,
    /// Messages queued.
    pub messages: u64,
    /// The owner's uid.
    pub uid: u32,
    /// The creator's uid.
    pub cuid: u32,
}

/// Lists the queues alive in this process's IPC namespace, like `ipcs -q`.
pub fn list_queues() -> io::Result<Vec<QueueInfo>> {
    // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
    let text = std::fs::read_to_string("/proc/sysvipc/msg")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(QueueInfo {
                key: f.first()?.parse().ok()?,
                id: f.get(1)?.parse().ok()?,
                messages: f.get(4)?.parse().ok()?,
                uid: f.get(7)?.parse().ok()?,
                cuid: f.get(9)?.parse().ok()?,
            })
        })
        .collect())
}

/// The three kinds of System V IPC object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcKind {
    /// A message queue.
    Queue,
    /// A semaphore set.
    Semaphores,
    /// A shared memory segment.
    SharedMemory,
}

/// An IPC object of this namespace and who owns it, from `/proc/sysvipc/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcObject {
    /// Its kind.
    pub kind: IpcKind,
    /// Its id.
    pub id: i32,
    /// The owner's uid.
    pub uid: u32,
    /// The creator's uid.
    pub cuid: u32,
}

/// Every System V IPC object of this process's IPC namespace (queues, semaphore sets,
/// shared memory segments), with owner and creator.
pub fn list_ipc_objects() -> Vec<IpcObject> {
    // (file, kind, column of uid, column of cuid); the id is always the second column.
    let tables = [
        ("msg", IpcKind::Queue, 7, 9),
        ("sem", IpcKind::Semaphores, 4, 6),
        ("shm", IpcKind::SharedMemory, 7, 9),
    ];
    let mut out = Vec::new();
    for (file, kind, uid_col, cuid_col) in tables {
        let Ok(text) = std::fs::read_to_string(format!("/proc/sysvipc/{file}")) else {
            continue;
        };
        out.extend(text.lines().skip(1).filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(IpcObject {
                kind,
                id: f.get(1)?.parse().ok()?,
                uid: f.get(uid_col)?.parse().ok()?,
                cuid: f.get(cuid_col)?.parse().ok()?,
            })
        }));
    }
    out
}

/// Removes an IPC object by id (`IPC_RMID`); the caller must own or have created it (or be
/// privileged). An object already gone counts as removed.
pub fn remove_ipc_object(kind: IpcKind, id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument of all three calls, so a null pointer is
    // allowed; the id is only a number the kernel checks.
    let rc = unsafe {
        match kind {
            IpcKind::Queue => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            IpcKind::Semaphores => libc::semctl(id, 0, libc::IPC_RMID),
            IpcKind::SharedMemory => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    if rc == 0 {
        return Ok(());
    }
    let err = errno();
    match err.raw_os_error() {
        Some(libc::EIDRM) | Some(libc::EINVAL) => Ok(()),
        _ => Err(err),
    }
}

/// Test support for unit tests, this crate's and (with the `test-support` feature) others'.
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use super::MessageQueue;

    /// A private queue removed when the test ends, pass or fail.
    pub struct Scratch(pub MessageQueue);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }

    /// A fresh private queue (no key can collide with it).
    pub fn scratch() -> Scratch {
        Scratch(MessageQueue::create_private(0o600).expect("create private queue"))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::scratch;
    use super::*;

    #[test]
    fn round_trip_keeps_type_and_bytes() {
        let q = scratch();
        q.0.send(7, b"hello\0world", Wait::Block).unwrap();
        let m = q.0.receive(Selector::Any, Wait::NoWait).unwrap();
        assert_eq!(m.mtype, 7);
        assert_eq!(m.body, b"hello\0world");
        assert!(!m.truncated);
    }

    #[test]
    fn empty_message_has_length_zero() {
        let q = scratch();
        q.0.send(2, b"", Wait::Block).unwrap();
        assert_eq!(q.0.stat().unwrap().bytes, 0);
        assert_eq!(q.0.stat().unwrap().messages, 1);
        let m = q.0.receive(Selector::Exact(2), Wait::NoWait).unwrap();
        assert_eq!((m.mtype, m.body.len()), (2, 0));
    }

    #[test]
    fn selectors_follow_msgrcv_semantics() {
        let q = scratch();
        for (t, b) in [(2, "stop"), (9, "reply"), (1, "req-a"), (1, "req-b")] {
            q.0.send(t, b.as_bytes(), Wait::Block).unwrap();
        }
        // Negative selector: lowest type first, so both requests come before the stop.
        let order: Vec<_> = (0..3)
            .map(|_| q.0.receive(Selector::AtMost(2), Wait::NoWait).unwrap().body)
            .collect();
        assert_eq!(
            order,
            vec![b"req-a".to_vec(), b"req-b".to_vec(), b"stop".to_vec()]
        );
        // The reply (type 9) is never taken by an AtMost(2) receive.
        assert!(matches!(
            q.0.receive(Selector::AtMost(2), Wait::NoWait),
            Err(MqError::NoMessage)
        ));
        assert_eq!(
            q.0.receive(Selector::Exact(9), Wait::NoWait).unwrap().body,
            b"reply"
        );
        q.0.send(5, b"x", Wait::Block).unwrap();
        assert_eq!(q.0.receive(Selector::Any, Wait::NoWait).unwrap().mtype, 5);
    }

    #[test]
    fn oversized_text_is_truncated_not_stuck() {
        let q = scratch();
        q.0.send(1, &[b'9'; 100], Wait::Block).unwrap();
        let m = q.0.receive_max(Selector::Any, 10, Wait::NoWait).unwrap();
        assert!(m.truncated);
        assert_eq!(m.body.len(), 10);
        assert_eq!(q.0.stat().unwrap().messages, 0);
    }

    #[test]
    fn send_over_msgmax_is_too_big() {
        let q = scratch();
        let limit = max_message_size().unwrap_or(8192);
        let err =
            q.0.send(1, &vec![0u8; limit + 1], Wait::NoWait)
                .unwrap_err();
        assert!(matches!(err, MqError::TooBig { .. }), "{err:?}");
    }

    #[test]
    fn full_queue_refuses_nowait_send() {
        let q = scratch();
        let cap = q.0.stat().unwrap().max_bytes as usize;
        let chunk = vec![1u8; 1024];
        let mut sent = 0;
        let err = loop {
            match q.0.send(1, &chunk, Wait::NoWait) {
                Ok(()) => sent += chunk.len(),
                Err(e) => break e,
            }
            assert!(sent <= cap, "queue accepted more than its capacity");
        };
        assert!(matches!(err, MqError::Full), "{err:?}");
        assert_eq!(q.0.stat().unwrap().bytes as usize, sent);
    }

    #[test]
    fn invalid_type_is_refused_before_the_kernel() {
        let q = scratch();
        assert!(matches!(
            q.0.send(0, b"x", Wait::NoWait),
            Err(MqError::InvalidType { mtype: 0 })
        ));
        assert!(matches!(
            q.0.send(-4, b"x", Wait::NoWait),
            Err(MqError::InvalidType { .. })
        ));
    }

    #[test]
    fn removal_wakes_a_blocked_receiver() {
        let q = MessageQueue::create_private(0o600).unwrap();
        let waiter = std::thread::spawn(move || q.receive(Selector::Exact(42), Wait::Block));
        std::thread::sleep(std::time::Duration::from_millis(100));
        q.remove().unwrap();
        let got = waiter.join().unwrap();
        assert!(matches!(got, Err(MqError::Removed)), "{got:?}");
        // Later calls on the old id say the same.
        assert!(matches!(q.stat(), Err(MqError::Removed)));
        assert!(matches!(
            q.send(1, b"", Wait::NoWait),
            Err(MqError::Removed)
        ));
        assert!(matches!(q.remove(), Err(MqError::Removed)));
    }

    #[test]
    fn peek_reads_a_message_by_position_and_leaves_it_queued() {
        let q = scratch();
        q.0.send(1, b"first", Wait::NoWait).unwrap();
        q.0.send(9, b"second", Wait::NoWait).unwrap();
        match q.0.peek(1, 64) {
            Ok(m) => {
                assert_eq!((m.mtype, m.body.as_slice()), (9, &b"second"[..]));
                assert_eq!(q.0.peek(0, 64).unwrap().body, b"first");
                assert!(matches!(q.0.peek(2, 64), Err(MqError::NoMessage)));
                assert_eq!(q.0.stat().unwrap().messages, 2, "nothing was taken");
            }
            // A kernel without CONFIG_CHECKPOINT_RESTORE: nothing to peek with.
            Err(MqError::Os { source, .. }) if source.raw_os_error() == Some(libc::ENOSYS) => {
                eprintln!("SKIPPED: MSG_COPY is not built into this kernel")
            }
            Err(e) => panic!("peek: {e}"),
        }
    }

    #[test]
    fn nowait_receive_on_empty_queue_is_no_message() {
        let q = scratch();
        assert!(matches!(
            q.0.receive(Selector::Any, Wait::NoWait),
            Err(MqError::NoMessage)
        ));
    }

    #[test]
    fn stats_count_messages_bytes_and_sender() {
        let q = scratch();
        q.0.send(1, b"1234", Wait::Block).unwrap();
        q.0.send(1, b"56", Wait::Block).unwrap();
        let s = q.0.stat().unwrap();
        assert_eq!((s.messages, s.bytes), (2, 6));
        assert_eq!(s.last_send_pid, std::process::id() as i32);
        assert_eq!(s.mode, 0o600);
        assert!(s.max_bytes >= 6);
    }

    #[test]
    fn opening_a_removed_key_is_not_found() {
        // Find a free key by creating it exclusively, then remove it: it is now surely missing.
        let base = 0x5047_0000 | (std::process::id() as i32 & 0xfff) << 4;
        let (key, q) = (base..base + 16)
            .find_map(|k| {
                MessageQueue::create_exclusive(k, 0o600)
                    .ok()
                    .map(|q| (k, q))
            })
            .expect("a free key among 16");
        assert!(MessageQueue::exists(key));
        assert_eq!(MessageQueue::open(key).unwrap().id(), q.id());
        q.remove().unwrap();
        assert!(matches!(MessageQueue::open(key), Err(MqError::NotFound { key: k }) if k == key));
        assert!(!MessageQueue::exists(key));
    }

    #[test]
    fn private_queues_appear_in_the_listing() {
        let q = scratch();
        let listed = list_queues().unwrap();
        assert!(listed.iter().any(|i| i.id == q.0.id()));
    }
}
