//! A free list of per-call states (tract session states, ONNX Runtime sessions): a caller
//! takes one, or makes one when none is free, and gives it back when done. Concurrent callers
//! each get their own; a single caller reuses the same one call after call.

use std::sync::Mutex;

pub(crate) struct Pool<T> {
    free: Mutex<Vec<T>>,
}

impl<T> Pool<T> {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }

    /// Starts the pool with one ready state, so the first call pays nothing extra.
    pub(crate) fn with(first: T) -> Self {
        Pool {
            free: Mutex::new(vec![first]),
        }
    }

    /// Runs `f` on a free state, or on one made by `make` when every state is in use. The
    /// state goes back to the pool afterwards, also when `f` fails (a failed run leaves no
    /// partial result behind in either backend).
    pub(crate) fn with_state<R, E>(
        &self,
        make: impl FnOnce() -> Result<T, E>,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, E> {
        let taken = self.lock().pop();
        let mut state = match taken {
            Some(s) => s,
            None => make()?,
        };
        let out = f(&mut state);
        self.lock().push(state);
        out
    }

    /// States currently idle.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A panic while holding the lock leaves a valid Vec behind.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_one_state_for_sequential_calls() {
        let pool: Pool<Vec<u8>> = Pool::new();
        let mut made = 0;
        for _ in 0..3 {
            pool.with_state(
                || -> Result<_, ()> {
                    made += 1;
                    Ok(Vec::new())
                },
                |s| {
                    s.push(1);
                    Ok(())
                },
            )
            .unwrap();
        }
        assert_eq!(made, 1);
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn concurrent_callers_get_their_own_state() {
        let pool: Pool<u32> = Pool::with(0);
        let made = std::sync::atomic::AtomicU32::new(0);
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    pool.with_state(
                        || -> Result<_, ()> {
                            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok(7)
                        },
                        |_| {
                            barrier.wait();
                            Ok(())
                        },
                    )
                    .unwrap();
                });
            }
        });
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 2);
    }
}
