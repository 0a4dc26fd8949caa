//! Secret<T>: zeroized on drop; Debug prints "***".
pub struct Secret<T: zeroize::Zeroize>(T);
