//! Drives one connection: its socket (tokio-postgres's `Connection`) and the tasks of its queries,
//! polled together by one tokio task, or by the JavaScript thread right after it queues requests.
//!
//! Why: handing each request to the tokio worker costs a thread wake-up, and each wake-up costs
//! more than the request. When the JavaScript thread has just queued requests it writes them
//! itself ([`Driver::flush`]): the wake-ups those requests would cause are held back while it
//! does ([`Driver::queue`]), and the worker wakes only when the server answers.

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

/// A query's work, polled to the end by the driver.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;
type Socket = Pin<Box<dyn Future<Output = ()> + Send>>;
type Deferred = Vec<Box<dyn FnOnce()>>;

/// Polls of the connection and jobs in one [`Driver::flush`] before the rest goes to the worker.
const FLUSH_ROUNDS: usize = 4;

pub struct Driver {
    inner: Mutex<Inner>,
    incoming: Mutex<Incoming>,
    relay: Arc<Relay>,
    /// The task found the driver busy (a flush on another thread): that flush wakes it after.
    bounced: AtomicBool,
}

struct Inner {
    socket: Option<Socket>,
    jobs: FuturesUnordered<Job>,
}

#[derive(Default)]
struct Incoming {
    jobs: Vec<Job>,
    finished: bool,
}

/// The waker everything inside the driver sees: it wakes the driver's task, unless the wake-up
/// happens on a thread that is about to poll the driver itself.
struct Relay {
    task: Mutex<Option<Waker>>,
    missed: AtomicBool,
}

thread_local! {
    /// The relay whose wake-ups this thread holds back (its address), or 0.
    static HOLDING: Cell<usize> = const { Cell::new(0) };
    /// Work deferred to the end of the driver run under way on this thread, if any.
    static AFTER_RUN: RefCell<Option<Deferred>> = const { RefCell::new(None) };
}

/// Runs `f` once the driver run under way on this thread is over (so that what the run's jobs
/// produced is announced once); false, without running it, when no run is under way.
pub fn after_run(f: impl FnOnce() + 'static) -> bool {
    AFTER_RUN.with(|a| match a.borrow_mut().as_mut() {
        Some(list) => {
            list.push(Box::new(f));
            true
        }
        None => false,
    })
}

impl Relay {
    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    fn wake_task(&self) {
        if let Some(w) = self.task.lock().expect("driver waker").as_ref() {
            w.wake_by_ref();
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if HOLDING.with(Cell::get) == self.id() {
            self.missed.store(true, Ordering::SeqCst);
        } else {
            self.wake_task();
        }
    }
}

impl Driver {
    /// Starts driving `socket` (tokio-postgres's connection future) on the runtime. The handle
    /// finishes once the socket is closed and every job has ended.
    pub fn start(socket: impl Future<Output = ()> + Send + 'static) -> (Arc<Driver>, tokio::task::JoinHandle<()>) {
        let driver = Arc::new(Driver {
            inner: Mutex::new(Inner { socket: Some(Box::pin(socket)), jobs: FuturesUnordered::new() }),
            incoming: Default::default(),
            relay: Arc::new(Relay { task: Mutex::new(None), missed: AtomicBool::new(false) }),
            bounced: AtomicBool::new(false),
        });
        let d = driver.clone();
        let task = tokio::spawn(std::future::poll_fn(move |cx| d.poll_task(cx)));
        (driver, task)
    }

    fn poll_task(&self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut task = self.relay.task.lock().expect("driver waker");
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        self.relay.missed.store(false, Ordering::SeqCst);
        // Never block the worker on a flush: leave a note that the flush acts on when it is done.
        let mut inner = match self.try_inner() {
            Some(inner) => inner,
            None => {
                self.bounced.store(true, Ordering::SeqCst);
                match self.try_inner() {
                    Some(inner) => inner,
                    None => return Poll::Pending,
                }
            }
        };
        if self.run(&mut inner) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The driver's state, unless another thread is polling it. (A panic while polling is caught
    /// inside the job, so the state stays consistent even if the lock was poisoned.)
    fn try_inner(&self) -> Option<MutexGuard<'_, Inner>> {
        match self.inner.try_lock() {
            Ok(inner) => Some(inner),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Polls the socket, then the jobs (which read what the socket routed to them). True when
    /// there is nothing left to drive.
    fn run(&self, inner: &mut Inner) -> bool {
        let outer = AFTER_RUN.with(|a| a.borrow_mut().replace(Vec::new()));
        let finished = self.run_once(inner);
        let deferred = AFTER_RUN.with(|a| std::mem::replace(&mut *a.borrow_mut(), outer));
        for f in deferred.into_iter().flatten() {
            f();
        }
        finished
    }

    fn run_once(&self, inner: &mut Inner) -> bool {
        let waker = Waker::from(self.relay.clone());
        let mut cx = Context::from_waker(&waker);
        inner.jobs.extend(self.incoming.lock().expect("driver jobs").jobs.drain(..));
        if let Some(socket) = inner.socket.as_mut() {
            if socket.as_mut().poll(&mut cx).is_ready() {
                inner.socket = None;
            }
        }
        while let Poll::Ready(Some(())) = inner.jobs.poll_next_unpin(&mut cx) {}
        if inner.socket.is_none() && inner.jobs.is_empty() {
            let mut incoming = self.incoming.lock().expect("driver jobs");
            if incoming.jobs.is_empty() {
                incoming.finished = true;
                return true;
            }
        }
        false
    }

    /// Runs `f` on this thread while holding back the wake-ups it causes in the driver (such as
    /// queuing a request for the socket); [`Driver::flush`] then does what they asked for.
    pub fn queue<T>(&self, f: impl FnOnce() -> T) -> T {
        let previous = HOLDING.with(|h| h.replace(self.relay.id()));
        let r = f();
        HOLDING.with(|h| h.set(previous));
        r
    }

    /// Adds a job; it is first polled by the next flush or by the driver's task. Once the
    /// driver has finished, the job goes to the runtime instead.
    pub fn add(&self, job: Job) {
        let mut incoming = self.incoming.lock().expect("driver jobs");
        if incoming.finished {
            drop(incoming);
            tokio::spawn(job);
        } else {
            incoming.jobs.push(job);
            self.relay.missed.store(true, Ordering::SeqCst);
        }
    }

    /// Writes what was queued and polls new jobs, here on the calling thread, unless the task is
    /// busy with it already (then the task does it).
    pub fn flush(&self) {
        if !self.relay.missed.swap(false, Ordering::SeqCst) {
            return;
        }
        let Some(mut inner) = self.try_inner() else {
            self.relay.wake_task();
            return;
        };
        let previous = HOLDING.with(|h| h.replace(self.relay.id()));
        let mut rounds = 0;
        let finished = loop {
            if self.run(&mut inner) {
                break true;
            }
            rounds += 1;
            if rounds == FLUSH_ROUNDS || !self.relay.missed.swap(false, Ordering::SeqCst) {
                break false;
            }
        };
        HOLDING.with(|h| h.set(previous));
        drop(inner);
        // Wake-ups held back and not yet acted on, the task's own, and the end are the task's.
        let bounced = self.bounced.swap(false, Ordering::SeqCst);
        if finished || bounced || self.relay.missed.swap(false, Ordering::SeqCst) {
            self.relay.wake_task();
        }
    }

    /// Leaves whatever is queued to the driver's task (when no flush will follow).
    pub fn hand_over(&self) {
        self.relay.wake_task();
    }

    /// Drops the socket and the jobs (after `end()` gave up waiting).
    pub fn close(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.socket = None;
            inner.jobs = FuturesUnordered::new();
        }
        self.relay.wake_task();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::oneshot;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
    }

    /// Waits (at most a second) for `count` to reach `n`, and asserts it did.
    fn wait_for(rt: &tokio::runtime::Runtime, count: &AtomicUsize, n: usize) {
        rt.block_on(async {
            for _ in 0..200 {
                if count.load(Ordering::SeqCst) == n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(count.load(Ordering::SeqCst), n);
    }

    #[test]
    fn jobs_queued_and_flushed_from_another_thread_run_to_the_end() {
        let rt = runtime();
        let (socket_done, socket_rx) = oneshot::channel::<()>();
        let (driver, task) = rt.block_on(async {
            Driver::start(async move {
                let _ = socket_rx.await;
            })
        });
        let finished = Arc::new(AtomicUsize::new(0));
        let mut answers = Vec::new();
        // This thread plays Node's: it queues jobs (holding back their wake-ups) and flushes.
        let _guard = rt.enter();
        for _ in 0..20 {
            let (tx, rx) = oneshot::channel::<u32>();
            answers.push(tx);
            let finished = finished.clone();
            let mut job: Job = Box::pin(async move {
                if rx.await.is_ok() {
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            });
            let waker = futures_util::task::noop_waker();
            assert!(driver.queue(|| job.as_mut().poll(&mut Context::from_waker(&waker))).is_pending());
            driver.add(job);
        }
        driver.flush();
        // The answers arrive on other threads, as the server's would.
        std::thread::spawn(move || {
            answers.into_iter().for_each(|tx| {
                let _ = tx.send(1);
            })
        })
        .join()
        .expect("answers");
        wait_for(&rt, &finished, 20);
        // Once the socket is done and no job is left, the task ends; later jobs still run.
        drop(socket_done);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), task).await.expect("task ends").expect("no panic")
        });
        let (tx, rx) = oneshot::channel();
        driver.add(Box::pin(async move {
            let _ = tx.send(());
        }));
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rx).await.expect("late job runs").expect("sent")
        });
    }

    #[test]
    fn work_deferred_to_the_end_of_a_run_runs_once_after_it() {
        assert!(!after_run(|| {}), "no run under way: nothing is deferred");
        let rt = runtime();
        let calls = Arc::new(AtomicUsize::new(0));
        let (driver, _task) = rt.block_on(async { Driver::start(std::future::pending::<()>()) });
        let _guard = rt.enter();
        for _ in 0..3 {
            let calls = calls.clone();
            let job: Job = Box::pin(async move {
                let seen = calls.clone();
                assert!(after_run(move || {
                    seen.fetch_add(1, Ordering::SeqCst);
                }));
                assert_eq!(calls.load(Ordering::SeqCst), 0, "deferred work waits for the end of the run");
            });
            driver.add(job);
        }
        driver.flush();
        wait_for(&rt, &calls, 3);
    }
}
