//! Syslog over TCP (RFC 6587): each frame is either octet-counted
//! (`MSG-LEN SP MSG`) or ends at a newline (non-transparent framing), and
//! senders may mix them. Frames longer than the limit are cut (the rest is
//! skipped) and flagged, so a hostile sender cannot make the rack buffer
//! without bound.

/// One frame: its bytes (at most the limit) and whether it was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message, without the length prefix or the trailing newline.
    pub bytes: Vec<u8>,
    /// The message was longer than the limit.
    pub cut: bool,
}

/// Incremental frame decoder for one TCP connection.
#[derive(Debug)]
pub struct Framer {
    buffer: Vec<u8>,
    max_bytes: usize,
    /// Bytes still to discard from an oversized octet-counted frame.
    skip_counted: usize,
    /// Discarding the rest of an oversized newline-terminated frame.
    skip_to_newline: bool,
}

/// Longest MSG-LEN prefix accepted (9 digits: below 1 GB).
const MAX_LEN_DIGITS: usize = 9;

impl Framer {
    /// A decoder that cuts frames at `max_bytes`.
    pub fn new(max_bytes: usize) -> Framer {
        Framer {
            buffer: Vec::new(),
            max_bytes: max_bytes.max(1),
            skip_counted: 0,
            skip_to_newline: false,
        }
    }

    /// Feeds received bytes and returns the frames they complete.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            if self.skip_counted > 0 {
                let n = self.skip_counted.min(data.len());
                self.skip_counted -= n;
                data = &data[n..];
                if self.skip_counted > 0 {
                    return frames;
                }
            }
            if self.skip_to_newline {
                match data.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.skip_to_newline = false;
                        data = &data[at + 1..];
                    }
                    None => return frames,
                }
            }
            self.buffer.extend_from_slice(data);
            data = &[];
            match self.next_frame() {
                Some(frame) => frames.push(frame),
                None => return frames,
            }
            if self.skip_counted > 0 || self.skip_to_newline {
                // Whatever was buffered past the cut is skipped input.
                data = &[];
                let rest = std::mem::take(&mut self.buffer);
                let mut rest = rest.as_slice();
                if self.skip_counted > 0 {
                    let n = self.skip_counted.min(rest.len());
                    self.skip_counted -= n;
                    rest = &rest[n..];
                } else if let Some(at) = rest.iter().position(|&b| b == b'\n') {
                    self.skip_to_newline = false;
                    rest = &rest[at + 1..];
                } else {
                    rest = &[];
                }
                self.buffer = rest.to_vec();
            }
        }
    }

    /// What is left when the peer closes: a last unterminated frame.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.skip_counted > 0 || self.skip_to_newline {
            return None;
        }
        let bytes = std::mem::take(&mut self.buffer);
        let trimmed = trim_line(&bytes);
        (!trimmed.is_empty()).then(|| Frame {
            bytes: trimmed.to_vec(),
            cut: false,
        })
    }

    /// Takes one complete frame off the buffer, if there is one.
    fn next_frame(&mut self) -> Option<Frame> {
        // Blank lines between frames are noise, not messages.
        let blank = self
            .buffer
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r' || b == 0)
            .count();
        self.buffer.drain(..blank);
        if self.buffer.is_empty() {
            return None;
        }
        if let Some(result) = self.octet_counted() {
            return result;
        }
        self.newline_terminated()
    }

    /// `Some(..)` when the buffer starts an octet-counted frame.
    fn octet_counted(&mut self) -> Option<Option<Frame>> {
        let digits = self
            .buffer
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || self.buffer[0] == b'0' || digits > MAX_LEN_DIGITS {
            return None;
        }
        match self.buffer.get(digits) {
            // Not yet known: wait, unless the digits already make it a line.
            None => return Some(None),
            Some(b' ') => {}
            Some(_) => return None,
        }
        let len: usize = std::str::from_utf8(&self.buffer[..digits])
            .ok()?
            .parse()
            .ok()?;
        let start = digits + 1;
        if len > self.max_bytes {
            if self.buffer.len() < start + self.max_bytes {
                return Some(None);
            }
            let bytes = self.buffer[start..start + self.max_bytes].to_vec();
            let consumed = (start + len).min(self.buffer.len());
            self.skip_counted = start + len - consumed;
            self.buffer.drain(..consumed);
            return Some(Some(Frame { bytes, cut: true }));
        }
        if self.buffer.len() < start + len {
            return Some(None);
        }
        let bytes = self.buffer[start..start + len].to_vec();
        self.buffer.drain(..start + len);
        Some(Some(Frame { bytes, cut: false }))
    }

    fn newline_terminated(&mut self) -> Option<Frame> {
        match self.buffer.iter().position(|&b| b == b'\n') {
            Some(at) if at <= self.max_bytes => {
                let bytes = trim_line(&self.buffer[..at]).to_vec();
                self.buffer.drain(..=at);
                Some(Frame { bytes, cut: false })
            }
            _ if self.buffer.len() > self.max_bytes => {
                let bytes = self.buffer[..self.max_bytes].to_vec();
                let rest = self.buffer.split_off(self.max_bytes);
                self.buffer = rest;
                self.skip_to_newline = true;
                Some(Frame { bytes, cut: true })
            }
            _ => None,
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| b != b'\r' && b != 0)
        .map_or(0, |i| i + 1);
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|f| String::from_utf8(f.bytes).unwrap())
            .collect()
    }

    #[test]
    fn newline_and_octet_counted_frames_mix() {
        let mut framer = Framer::new(1024);
        let frames = framer.push(b"<13>one\n10 <13>two\nxx<13>three\r\n");
        assert_eq!(texts(frames), ["<13>one", "<13>two\nxx", "<13>three"]);
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let input = b"5 <13>a<14>line two\n12 <15>counted!";
        for split in 0..input.len() {
            let mut framer = Framer::new(1024);
            let mut frames = framer.push(&input[..split]);
            frames.extend(framer.push(&input[split..]));
            assert_eq!(
                texts(frames),
                ["<13>a", "<14>line two", "<15>counted!"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_cut_and_the_stream_stays_in_step() {
        let mut framer = Framer::new(8);
        let mut frames = framer.push(b"20 <13>0123456789abcdefnext\n");
        frames.extend(framer.push(b"<13>a very long line indeed\n<13>ok\n"));
        let cut: Vec<bool> = frames.iter().map(|f| f.cut).collect();
        assert_eq!(texts(frames), ["<13>0123", "next", "<13>a ve", "<13>ok"]);
        assert_eq!(cut, [true, false, true, false]);
    }

    #[test]
    fn an_unterminated_last_line_is_delivered_at_close() {
        let mut framer = Framer::new(64);
        assert!(framer.push(b"<13>last words").is_empty());
        assert_eq!(framer.finish().unwrap().bytes, b"<13>last words");
        assert!(framer.finish().is_none());
    }
}
