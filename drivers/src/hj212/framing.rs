//! Cutting a byte stream into HJ 212 frames: every frame ends with CR LF, and TCP may split a frame across reads
//! or put several frames in one.
//!
//! [`LineFramer`] keeps at most one unfinished line, never longer than its limit. A line that grows past the
//! limit is reported once as [`Hj212Error::Oversized`] and its bytes are dropped up to the next CR LF, after which
//! framing resumes; so a peer that never sends CR LF costs a bounded buffer, not memory without end.
//!
//! Two small repairs keep a connection useful after line noise: empty lines are skipped, and junk in front of a
//! `##` on the same line is reported as [`Hj212Error::Garbage`] while the frame from `##` on is still returned.
//! This module does not decode frames; it only finds their ends.

use super::Hj212Error;

/// Splits a byte stream into CR LF-terminated lines of at most `max` bytes (CR LF included).
#[derive(Debug)]
pub struct LineFramer {
    /// The unfinished line; never longer than `max`.
    line: Vec<u8>,
    max: usize,
    /// Dropping bytes until the next CR LF, after an oversized line.
    discarding: bool,
    /// Whether the last byte fed was CR, so that a CR LF split across two feeds is still seen.
    last_was_cr: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes including CR LF (at least 2).
    pub fn new(max: usize) -> Self {
        LineFramer { line: Vec::new(), max: max.max(2), discarding: false, last_was_cr: false }
    }

    /// How many bytes of an unfinished line are held; at most the limit.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// Feeds the next bytes of the stream; returns the lines they complete, each with its CR LF, and the
    /// problems found on the way, in stream order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Vec<u8>, Hj212Error>> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            let after_cr = match i.checked_sub(1) {
                Some(prev) if prev >= start => bytes.get(prev) == Some(&b'\r'),
                // The LF opens this slice: the CR, if any, came in the previous feed.
                _ if start == 0 => self.last_was_cr,
                _ => false,
            };
            if !after_cr {
                continue;
            }
            let piece = bytes.get(start..=i).unwrap_or_default();
            start = i + 1;
            if self.discarding {
                self.discarding = false;
                self.line.clear();
                continue;
            }
            if self.line.len() + piece.len() > self.max {
                self.line.clear();
                out.push(Err(Hj212Error::Oversized { max: self.max }));
                continue;
            }
            self.line.extend_from_slice(piece);
            let line = std::mem::take(&mut self.line);
            emit(line, &mut out);
        }
        let rest = bytes.get(start..).unwrap_or_default();
        if !rest.is_empty() && !self.discarding {
            if self.line.len() + rest.len() > self.max {
                self.line.clear();
                self.discarding = true;
                out.push(Err(Hj212Error::Oversized { max: self.max }));
            } else {
                self.line.extend_from_slice(rest);
            }
        }
        if let Some(&last) = bytes.last() {
            self.last_was_cr = last == b'\r';
        }
        out
    }
}

/// Passes on a finished line: skips an empty one, and splits junk off the front of a `##` frame.
fn emit(line: Vec<u8>, out: &mut Vec<Result<Vec<u8>, Hj212Error>>) {
    if line == b"\r\n" {
        return;
    }
    if line.starts_with(b"##") {
        out.push(Ok(line));
        return;
    }
    match line.windows(2).position(|w| w == b"##") {
        Some(at) => {
            out.push(Err(Hj212Error::Garbage { len: at }));
            out.push(Ok(line.get(at..).unwrap_or_default().to_vec()));
        }
        // No header at all: let the decoder say what is wrong with it.
        None => out.push(Ok(line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer, bytes: &[u8]) -> Vec<Result<String, Hj212Error>> {
        framer.feed(bytes).into_iter().map(|r| r.map(|l| String::from_utf8_lossy(&l).into_owned())).collect()
    }

    #[test]
    fn whole_split_and_coalesced_lines() {
        let mut f = LineFramer::new(64);
        assert_eq!(lines(&mut f, b"##a\r\n##b\r\n##c"), vec![Ok("##a\r\n".to_owned()), Ok("##b\r\n".to_owned())]);
        assert_eq!(lines(&mut f, b"\r"), vec![]);
        assert_eq!(lines(&mut f, b"\n"), vec![Ok("##c\r\n".to_owned())]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn a_lone_lf_or_cr_is_part_of_the_line() {
        let mut f = LineFramer::new(64);
        assert_eq!(lines(&mut f, b"##a\nb\rc\r\n"), vec![Ok("##a\nb\rc\r\n".to_owned())]);
        // A CR at the end of one feed and a LF that is not first in the next do not pair up.
        assert_eq!(lines(&mut f, b"##x\r"), vec![]);
        assert_eq!(lines(&mut f, b"y\n\r\n"), vec![Ok("##x\ry\n\r\n".to_owned())]);
    }

    #[test]
    fn empty_lines_are_skipped_and_junk_before_a_header_is_split_off() {
        let mut f = LineFramer::new(64);
        assert_eq!(
            lines(&mut f, b"\r\n\r\nxx##a\r\njunk\r\n"),
            vec![Err(Hj212Error::Garbage { len: 2 }), Ok("##a\r\n".to_owned()), Ok("junk\r\n".to_owned())]
        );
    }

    #[test]
    fn an_oversized_line_is_reported_once_and_dropped_up_to_the_next_line_end() {
        let mut f = LineFramer::new(8);
        assert_eq!(lines(&mut f, b"##abcdefghij"), vec![Err(Hj212Error::Oversized { max: 8 })]);
        assert_eq!(f.buffered(), 0);
        assert_eq!(lines(&mut f, b"klmnop"), vec![]);
        assert_eq!(lines(&mut f, b"q\r\n##ok\r\n"), vec![Ok("##ok\r\n".to_owned())]);
        // A line that is too long but complete within one feed is reported too.
        assert_eq!(
            lines(&mut f, b"##toolong!\r\n##b\r\n"),
            vec![Err(Hj212Error::Oversized { max: 8 }), Ok("##b\r\n".to_owned())]
        );
    }

    #[test]
    fn the_limit_includes_cr_lf() {
        let mut f = LineFramer::new(7);
        assert_eq!(lines(&mut f, b"##abc\r\n"), vec![Ok("##abc\r\n".to_owned())]);
        assert_eq!(lines(&mut f, b"##abcd\r\n"), vec![Err(Hj212Error::Oversized { max: 7 })]);
    }
}
