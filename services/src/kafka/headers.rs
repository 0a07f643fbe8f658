//! Message headers read as bytes. rdkafka's `Headers` accessors turn every header name into a
//! `&str` with `unwrap()`, so a name that is not UTF-8 would panic the consumer on every replica
//! that takes the partition.

use rdkafka::bindings::{rd_kafka_header_get_all, rd_kafka_headers_t};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use std::ffi::{CStr, c_char, c_void};

/// A consumed message's headers whose names are all UTF-8: safe to hand to `Headers` users.
pub struct CheckedHeaders<'a>(Vec<(&'a str, Option<&'a [u8]>)>);

impl Headers for CheckedHeaders<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn try_get(&self, idx: usize) -> Option<Header<'_, &[u8]>> {
        self.0.get(idx).map(|&(key, value)| Header { key, value })
    }
}

/// A header whose name is not UTF-8.
#[derive(Debug, thiserror::Error)]
#[error("header {index} has a name that is not UTF-8: {name:?}")]
pub struct InvalidHeader {
    pub index: usize,
    /// The name with invalid bytes replaced, for logs.
    pub name: String,
}

/// The headers of a message, read without rdkafka's name conversion.
pub fn check_headers(headers: Option<&OwnedHeaders>) -> Result<CheckedHeaders<'_>, InvalidHeader> {
    let Some(headers) = headers else {
        return Ok(CheckedHeaders(Vec::new()));
    };
    // A `BorrowedHeaders` reference is librdkafka's header list pointer (as rdkafka builds it).
    let native =
        std::ptr::from_ref::<BorrowedHeaders>(headers.as_borrowed()).cast::<rd_kafka_headers_t>();
    let mut checked = Vec::with_capacity(headers.count());
    for index in 0..headers.count() {
        let mut name: *const c_char = std::ptr::null();
        let mut value: *const c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `native` is the live list `headers` owns and `index` is below its count; the
        // name and value librdkafka returns point into that list, which outlives the borrow.
        let failed =
            unsafe { rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
        if failed as i32 != 0 || name.is_null() {
            break;
        }
        // SAFETY: librdkafka stores header names NUL-terminated.
        let raw = unsafe { CStr::from_ptr(name) }.to_bytes();
        let Ok(key) = std::str::from_utf8(raw) else {
            return Err(InvalidHeader {
                index,
                name: String::from_utf8_lossy(raw).into_owned(),
            });
        };
        // SAFETY: `value` points at `size` bytes inside the same list.
        let value = (!value.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
        checked.push((key, value));
    }
    Ok(CheckedHeaders(checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::bindings::rd_kafka_header_add;

    /// Adds a header with arbitrary name bytes, as a non-Java client can.
    pub(crate) fn add_raw(headers: &OwnedHeaders, name: &[u8], value: &[u8]) {
        let native = std::ptr::from_ref::<BorrowedHeaders>(headers.as_borrowed())
            .cast::<rd_kafka_headers_t>()
            .cast_mut();
        // SAFETY: the list is owned by `headers` and librdkafka copies name and value.
        let failed = unsafe {
            rd_kafka_header_add(
                native,
                name.as_ptr().cast(),
                name.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            )
        };
        assert_eq!(failed as i32, 0);
    }

    #[test]
    fn utf8_names_pass_with_their_values() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some(&b"00-ab"[..]),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        let checked = check_headers(Some(&headers)).unwrap();
        assert_eq!(checked.count(), 2);
        let first = checked.try_get(0).unwrap();
        assert_eq!(
            (first.key, first.value),
            ("traceparent", Some(&b"00-ab"[..]))
        );
        assert_eq!(checked.try_get(1).unwrap().value, None);
        assert_eq!(check_headers(None).unwrap().count(), 0);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_an_error_not_a_panic() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "ok",
            value: Some(&b"1"[..]),
        });
        add_raw(&headers, b"bad\xff\xfe", b"x");
        let err = check_headers(Some(&headers)).err().expect("invalid name");
        assert_eq!(err.index, 1);
        assert!(err.name.starts_with("bad"), "{}", err.name);
    }
}
