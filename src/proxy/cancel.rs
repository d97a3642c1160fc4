//! The cancel map: the key the proxy gave a client (its own BackendKeyData) → the upstream
//! connection's key. A client's CancelRequest arrives on a new local connection; the proxy looks
//! its key up here and sends the upstream key through the tunnel, in TLS with the same SNI.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct CancelMap {
    next_pid: AtomicU32,
    keys: Mutex<HashMap<u32, Entry>>,
}

struct Entry {
    secret: u32,
    upstream: (u32, u32),
}

/// Removes its entry when the session ends.
pub struct Registration<'a> {
    map: &'a CancelMap,
    pub pid: u32,
    pub secret: u32,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.map.keys.lock().expect("cancel map").remove(&self.pid);
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // The TLS provider's CSPRNG: a client must not guess another session's key.
    if crate::tls::provider().secure_random.fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.subsec_nanos() ^ 0x9e37_79b9;
    }
    u32::from_be_bytes(b)
}

impl CancelMap {
    /// Gives a session its local key, mapped to `upstream`.
    pub fn register(&self, upstream: (u32, u32)) -> Registration<'_> {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let secret = random_u32();
        self.keys.lock().expect("cancel map").insert(pid, Entry { secret, upstream });
        Registration { map: self, pid, secret }
    }

    /// The upstream key for a client's (pid, secret); `None` when unknown or the secret is wrong.
    pub fn lookup(&self, pid: u32, secret: u32) -> Option<(u32, u32)> {
        let keys = self.keys.lock().expect("cancel map");
        keys.get(&pid).filter(|e| e.secret == secret).map(|e| e.upstream)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().expect("cancel map").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_while_registered_and_need_the_secret() {
        let map = CancelMap::default();
        let a = map.register((100, 200));
        let b = map.register((101, 201));
        assert_ne!(a.pid, b.pid);
        assert_eq!(map.lookup(a.pid, a.secret), Some((100, 200)));
        assert_eq!(map.lookup(a.pid, a.secret.wrapping_add(1)), None);
        let (pid, secret) = (b.pid, b.secret);
        drop(b);
        assert_eq!(map.lookup(pid, secret), None);
        assert_eq!(map.len(), 1);
    }
}
