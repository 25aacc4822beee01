//! JSON values skipped by their quotes and brackets alone, without validating what is inside: for the
//! locators that find the few members a payload's consumer needs in a text serde would otherwise read whole.

use std::ops::Range;

/// A position in a JSON text (`B`: the bytes, borrowed or, for a reader that rewrites what it has read,
/// borrowed mutably).
pub(crate) struct Cursor<B> {
    pub bytes: B,
    pub at: usize,
}

impl<B: AsRef<[u8]>> Cursor<B> {
    pub fn new(bytes: B) -> Self {
        Self { bytes, at: 0 }
    }

    /// The byte here, if any.
    pub fn peek(&self) -> Option<u8> {
        self.bytes.as_ref().get(self.at).copied()
    }

    pub fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// `wanted` next (after whitespace), stepped over.
    pub fn byte(&mut self, wanted: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == wanted).then_some(())?;
        self.at += 1;
        Some(())
    }

    /// Nothing but whitespace left.
    pub fn at_end(&mut self) -> bool {
        self.whitespace();
        self.at == self.bytes.as_ref().len()
    }

    /// An object's members: `each` gets the cursor at the value and the key's range (the key has no escapes).
    pub fn members(
        &mut self,
        mut each: impl FnMut(&mut Self, Range<usize>) -> Option<()>,
    ) -> Option<()> {
        self.byte(b'{')?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            (self.peek() == Some(b'"')).then_some(())?;
            let key = self.value()?;
            let key = key.start + 1..key.end - 1;
            if self.bytes.as_ref().get(key.clone())?.contains(&b'\\') {
                return None;
            }
            self.byte(b':')?;
            self.whitespace();
            each(self, key)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array's elements: `each` gets the cursor at each element.
    pub fn elements(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.byte(b'[')?;
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            each(self)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The range of the value here, skipped.
    pub fn value(&mut self) -> Option<Range<usize>> {
        let bytes = self.bytes.as_ref();
        let start = self.at;
        self.at = match *bytes.get(start)? {
            b'"' => literal_end(bytes, start)? + 1,
            b'{' | b'[' => nested_end(bytes, start)?,
            _ => {
                let len = crate::escape::scalar_len(&bytes[start..]);
                (len > 0).then_some(start + len)?
            }
        };
        Some(start..self.at)
    }
}

/// The index of the quote that closes the string literal opening at `open`: the first quote after it with an
/// even number of backslashes right before it.
pub(crate) fn literal_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut from = open + 1;
    loop {
        let quote = from + memchr::memchr(b'"', bytes.get(from..)?)?;
        let backslashes = bytes[open + 1..quote]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        from = quote + 1;
    }
}

/// The index just past the object or array opening at `open`.
pub(crate) fn nested_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = open;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => at = literal_end(bytes, at)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}
