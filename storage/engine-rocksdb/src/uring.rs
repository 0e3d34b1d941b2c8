//! io_uring data-file I/O: one dedicated thread owns the ring. Callers send requests over a
//! bounded channel and await a oneshot for the completion, so no tokio worker ever blocks.
//!
//! The ring thread keeps each in-flight request (its file and buffer) in a table until the kernel
//! completes it, which is what makes handing raw pointers to the kernel sound. Short reads and
//! writes are resubmitted for the remainder. The thread waits for a completion while requests
//! are in flight; new requests queue in the channel meanwhile (file I/O always completes, so the
//! wait is bounded by one device operation).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::{mpsc, oneshot};

use crate::io::IoBackend;
use crate::limits::{URING_ENTRIES_MAX, URING_QUEUE_DEPTH_MAX};

#[derive(Debug)]
enum Op {
    Write { data: Bytes, done: usize },
    Read { buf: Vec<u8>, done: usize },
    Fsync,
}

#[derive(Debug)]
struct Request {
    file: Arc<File>,
    offset: u64,
    op: Op,
    reply: oneshot::Sender<io::Result<Vec<u8>>>,
}

/// The io_uring backend; dropping it stops the ring thread once in-flight requests finish.
#[derive(Debug)]
pub struct UringIo {
    tx: mpsc::Sender<Request>,
}

impl UringIo {
    /// Sets up a ring (fails where `io_uring_setup` is not allowed) and starts its thread.
    pub fn start() -> io::Result<UringIo> {
        let ring = IoUring::new(URING_ENTRIES_MAX)?;
        let (tx, rx) = mpsc::channel(URING_QUEUE_DEPTH_MAX);
        std::thread::Builder::new()
            .name("cairn-uring".into())
            .spawn(move || ring_thread(ring, rx))?;
        Ok(UringIo { tx })
    }

    async fn submit(&self, file: Arc<File>, offset: u64, op: Op) -> io::Result<Vec<u8>> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Request {
                file,
                offset,
                op,
                reply,
            })
            .await
            .map_err(|_| io::Error::other("io_uring thread has stopped"))?;
        done.await
            .map_err(|_| io::Error::other("io_uring thread dropped the request"))?
    }
}

impl IoBackend for UringIo {
    async fn write_at(&self, file: Arc<File>, offset: u64, data: Bytes) -> io::Result<()> {
        self.submit(file, offset, Op::Write { data, done: 0 })
            .await
            .map(|_| ())
    }

    async fn read_at(&self, file: Arc<File>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.submit(
            file,
            offset,
            Op::Read {
                buf: vec![0u8; len],
                done: 0,
            },
        )
        .await
    }

    async fn fsync(&self, file: Arc<File>) -> io::Result<()> {
        self.submit(file, offset_zero(), Op::Fsync)
            .await
            .map(|_| ())
    }
}

fn offset_zero() -> u64 {
    0
}

/// The submission entry for what remains of `req`.
fn entry_for(req: &mut Request, user_data: u64) -> squeue::Entry {
    let fd = types::Fd(req.file.as_raw_fd());
    match &mut req.op {
        Op::Write { data, done } => {
            let rest = &data[*done..];
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            opcode::Write::new(fd, rest.as_ptr(), len)
                .offset(req.offset + *done as u64)
                .build()
        }
        Op::Read { buf, done } => {
            let rest = &mut buf[*done..];
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            opcode::Read::new(fd, rest.as_mut_ptr(), len)
                .offset(req.offset + *done as u64)
                .build()
        }
        Op::Fsync => opcode::Fsync::new(fd).build(),
    }
    .user_data(user_data)
}

fn push(ring: &mut IoUring, in_flight: &mut HashMap<u64, Request>, id: u64, mut req: Request) {
    let entry = entry_for(&mut req, id);
    // SAFETY: the entry points into `req`'s buffer (a `Bytes` or a `Vec` that is never resized
    // while in flight) and its file descriptor is kept open by `req.file`; `req` stays in
    // `in_flight` until the kernel reports the completion for `id`.
    let pushed = unsafe { ring.submission().push(&entry) };
    match pushed {
        Ok(()) => {
            in_flight.insert(id, req);
        }
        Err(_) => {
            // Cannot happen: in-flight requests are capped at the ring size. Report, don't hang.
            let _ = req
                .reply
                .send(Err(io::Error::other("io_uring submission queue full")));
        }
    }
}

fn ring_thread(mut ring: IoUring, mut rx: mpsc::Receiver<Request>) {
    let mut in_flight: HashMap<u64, Request> = HashMap::new();
    let mut next_id: u64 = 0;
    let capacity = URING_ENTRIES_MAX as usize;
    let mut open = true;
    loop {
        if in_flight.is_empty() {
            if !open {
                return;
            }
            match rx.blocking_recv() {
                Some(req) => {
                    next_id += 1;
                    push(&mut ring, &mut in_flight, next_id, req);
                }
                None => return,
            }
        }
        while open && in_flight.len() < capacity {
            match rx.try_recv() {
                Ok(req) => {
                    next_id += 1;
                    push(&mut ring, &mut in_flight, next_id, req);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if in_flight.is_empty() {
            continue;
        }
        if let Err(e) = ring.submit_and_wait(1) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The ring itself failed: fail everything in flight and stop; callers see the error
            // and later sends fail because the receiver is gone.
            for (_, req) in in_flight.drain() {
                let _ = req.reply.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            return;
        }
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (id, res) in done {
            let Some(mut req) = in_flight.remove(&id) else {
                continue;
            };
            if res < 0 {
                let _ = req.reply.send(Err(io::Error::from_raw_os_error(-res)));
                continue;
            }
            let n = usize::try_from(res).unwrap_or(0);
            let finished = match &mut req.op {
                Op::Write { data, done } => {
                    if n == 0 && *done < data.len() {
                        let _ = req
                            .reply
                            .send(Err(io::Error::from(io::ErrorKind::WriteZero)));
                        continue;
                    }
                    *done += n;
                    *done >= data.len()
                }
                Op::Read { buf, done } => {
                    *done += n;
                    if n == 0 {
                        let d = *done;
                        buf.truncate(d);
                    }
                    n == 0 || *done >= buf.len()
                }
                Op::Fsync => true,
            };
            if finished {
                let out = match req.op {
                    Op::Read { buf, .. } => buf,
                    _ => Vec::new(),
                };
                let _ = req.reply.send(Ok(out));
            } else {
                next_id += 1;
                push(&mut ring, &mut in_flight, next_id, req);
            }
        }
    }
}
