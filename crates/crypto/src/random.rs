//! Randomness from the system CSPRNG (aws-lc-rs).

use zeroize::Zeroizing;

/// `N` random bytes. The CSPRNG failing is unrecoverable for a key manager, so this
/// reports the error instead of returning weak bytes.
pub fn bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, aws_lc_rs::error::Unspecified> {
    let mut b = Zeroizing::new([0u8; N]);
    aws_lc_rs::rand::fill(b.as_mut())?;
    Ok(b)
}
