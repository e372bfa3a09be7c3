//! The webhook signature: HMAC-SHA256 of the exact body bytes under the target's
//! secret, hex, sent as `X-Outpost-Signature-256: sha256=<hex>` (the form GitHub's
//! webhooks use, so receivers' existing checks fit). docs/cross-account-setup.md shows
//! how a receiver checks it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-outpost-signature-256";

/// The header that carries the event id (receivers deduplicate with it: delivery is
/// at least once).
pub const EVENT_ID_HEADER: &str = "x-outpost-event-id";

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::signature;

    /// RFC 4231, test case 2.
    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
