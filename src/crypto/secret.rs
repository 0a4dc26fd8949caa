//! Secret<T>: zeroized on drop; Debug prints "***".
use std::fmt;
use zeroize::Zeroize;

/// A value that is wiped from memory when dropped and never shown by `Debug`.
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`; it is zeroized when the `Secret` is dropped.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Borrows the secret value.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Mutably borrows the secret value (e.g. to fill a buffer in place).
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T: Zeroize + Clone> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_masked() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn zeroize_runs() {
        let mut v = vec![1u8, 2, 3];
        v.zeroize();
        assert!(v.is_empty());
        let mut s = Secret::new([7u8; 4]);
        s.expose_mut()[0] = 1;
        assert_eq!(s.expose(), &[1, 7, 7, 7]);
    }
}
