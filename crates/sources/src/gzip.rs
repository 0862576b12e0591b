use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("body is not valid gzip: {0}")]
    Invalid(std::io::Error),
    #[error("decompressed body is larger than {0} bytes")]
    TooLarge(usize),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether a body is gzip: declared so (`Content-Encoding`), or starting with gzip's magic.
pub fn is_gzip(body: &[u8], declared_gzip: bool) -> bool {
    declared_gzip || body.starts_with(&GZIP_MAGIC)
}

/// Decompresses `body` when it is gzip (by `Content-Encoding` or by its magic bytes), refusing
/// to inflate past `limit` bytes so a small bomb cannot exhaust memory.
pub fn gunzip_if_compressed(
    body: &[u8],
    declared_gzip: bool,
    limit: usize,
) -> Result<Option<Vec<u8>>, GzipError> {
    if !is_gzip(body, declared_gzip) {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(GzipError::Invalid)?;
    if out.len() > limit {
        return Err(GzipError::TooLarge(limit));
    }
    Ok(Some(out))
}

/// A body that can be read as a stream, as many times as needed, inflated on the fly when it
/// is gzip: memory stays flat whatever it inflates to. Opening checks it once (valid gzip,
/// at most `limit` bytes inflated), so the readers it gives do not fail.
pub struct BodyStream<'a> {
    body: &'a [u8],
    gzip: bool,
}

impl<'a> BodyStream<'a> {
    pub fn open(body: &'a [u8], declared_gzip: bool, limit: usize) -> Result<Self, GzipError> {
        let gzip = is_gzip(body, declared_gzip);
        if gzip {
            let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
            let inflated =
                std::io::copy(&mut decoder, &mut std::io::sink()).map_err(GzipError::Invalid)?;
            if inflated > limit as u64 {
                return Err(GzipError::TooLarge(limit));
            }
        }
        Ok(BodyStream { body, gzip })
    }

    pub fn reader(&self) -> Box<dyn Read + 'a> {
        if self.gzip {
            Box::new(flate2::read::MultiGzDecoder::new(self.body))
        } else {
            Box::new(self.body)
        }
    }

    /// The first bytes (up to `n`) of the body as read.
    pub fn head(&self, n: usize) -> Vec<u8> {
        let mut head = Vec::with_capacity(n);
        let _ = self.reader().take(n as u64).read_to_end(&mut head);
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_bodies_pass_through() {
        assert_eq!(gunzip_if_compressed(b"{}", false, 10).unwrap(), None);
    }

    #[test]
    fn gzip_is_detected_and_limited() {
        let body = gz(b"hello world");
        assert_eq!(
            gunzip_if_compressed(&body, false, 100).unwrap().unwrap(),
            b"hello world"
        );
        assert!(matches!(
            gunzip_if_compressed(&body, false, 5),
            Err(GzipError::TooLarge(5))
        ));
        assert!(matches!(
            gunzip_if_compressed(b"not gzip", true, 100),
            Err(GzipError::Invalid(_))
        ));
    }
}
