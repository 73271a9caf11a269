//! ClickHouse's lexer, in Rust: where ClickHouse itself says each token of a query begins and
//! ends, and what kind of token it is.
//!
//! Written from ClickHouse's lexical rules (ClickHouse 26.9, the local engine's version, and
//! the documented syntax): whitespace; `--`, `//` and `# `/`#!` line comments; nested `/* */`
//! comments; `'…'` strings and `` `…` `` / `"…"` quoted identifiers, where a backslash escapes
//! the next byte *in all three* and a doubled quote stands for itself; heredocs `$tag$…$tag$`,
//! whose tag is anything up to the next `$`; `x'…'` / `b'…'` literals; numbers (`0x`, `0b`,
//! `_` separators, exponents, and a number running into letters becoming one bare word); bare
//! words of `[A-Za-z0-9_$]`. Anything ClickHouse would reject, and any non-ASCII byte outside
//! a string, identifier, comment or heredoc (ClickHouse reads some as whitespace or as
//! typographic quotes), is an error token: the guard refuses what it cannot read exactly as
//! ClickHouse does.
//!
//! The guard does not parse with this lexer; it compares it with sqlparser's tokens
//! (`agreement.rs`), so that the parser the guard trusts and the engine that runs the text
//! see the same token boundaries.

/// What a token is, in the classes the agreement check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Spaces, tabs and newlines.
    Whitespace,
    /// A `--`, `#` or `/* */` comment.
    Comment,
    /// A keyword or an unquoted identifier.
    BareWord,
    /// A backquoted or double-quoted identifier.
    QuotedIdentifier,
    /// A string literal, a heredoc, or an `x'…'` / `b'…'` literal.
    String,
    /// A numeric literal.
    Number,
    /// `.`
    Dot,
    /// `)` or `]`.
    ClosingBracket,
    /// `{`
    OpeningCurlyBrace,
    /// `}`
    ClosingCurlyBrace,
    /// `:`
    Colon,
    /// Any other operator or punctuation.
    Punctuation,
    /// Something ClickHouse would not accept here, or that the guard does not read.
    Error(&'static str),
}

/// One token: its kind and its byte range in the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: Kind,
    /// Its first byte in the query.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

impl Kind {
    /// Whitespace and comments are not significant (they never change what precedes them).
    pub fn is_significant(self) -> bool {
        !matches!(self, Kind::Whitespace | Kind::Comment)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The tokens of `sql`, as ClickHouse's lexer splits it. Lexing stops after the first error.
pub fn tokens(sql: &str) -> Vec<Token> {
    let mut lexer = Lexer { text: sql.as_bytes(), pos: 0, previous: None };
    let mut out = Vec::new();
    while lexer.pos < lexer.text.len() {
        let start = lexer.pos;
        let kind = lexer.next_kind();
        out.push(Token { kind, start, end: lexer.pos });
        if kind.is_significant() {
            lexer.previous = Some(kind);
        }
        if matches!(kind, Kind::Error(_)) {
            break;
        }
    }
    out
}

struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
    /// The kind of the last significant token (numbers and dots depend on it).
    previous: Option<Kind>,
}

impl Lexer<'_> {
    fn at(&self, offset: usize) -> Option<u8> {
        self.text.get(self.pos + offset).copied()
    }

    fn next_kind(&mut self) -> Kind {
        let first = self.text[self.pos];
        match first {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b => {
                while matches!(self.at(0), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)) {
                    self.pos += 1;
                }
                Kind::Whitespace
            }
            b'0'..=b'9' => self.number(),
            b'\'' => self.quoted(b'\'', Kind::String, "a string is not closed"),
            b'"' => self.quoted(b'"', Kind::QuotedIdentifier, "a double-quoted identifier is not closed"),
            b'`' => self.quoted(b'`', Kind::QuotedIdentifier, "a back-quoted identifier is not closed"),
            b'(' | b'[' | b',' | b';' | b'+' | b'*' | b'%' | b'?' => self.single(Kind::Punctuation),
            b')' | b']' => self.single(Kind::ClosingBracket),
            b'{' => self.single(Kind::OpeningCurlyBrace),
            b'}' => self.single(Kind::ClosingCurlyBrace),
            b'.' => self.dot(),
            b'-' => match self.at(1) {
                Some(b'>') => self.advance(2, Kind::Punctuation),
                Some(b'-') => self.line_comment(),
                _ => self.single(Kind::Punctuation),
            },
            b'/' => match self.at(1) {
                Some(b'/') => self.line_comment(),
                Some(b'*') => self.block_comment(),
                _ => self.single(Kind::Punctuation),
            },
            // ClickHouse reads `# ` and `#!` as line comments; a `#` before anything else is an error.
            b'#' => match self.at(1) {
                Some(b' ' | b'!') => self.line_comment(),
                _ => self.single(Kind::Error("`#` that does not start a comment")),
            },
            b'=' => self.advance(if self.at(1) == Some(b'=') { 2 } else { 1 }, Kind::Punctuation),
            b'!' => match self.at(1) {
                Some(b'=') => self.advance(2, Kind::Punctuation),
                _ => self.single(Kind::Error("`!` outside `!=`")),
            },
            b'<' => self.advance(if matches!(self.at(1), Some(b'=' | b'>')) { 2 } else { 1 }, Kind::Punctuation),
            b'>' => self.advance(if self.at(1) == Some(b'=') { 2 } else { 1 }, Kind::Punctuation),
            b':' => match self.at(1) {
                Some(b':') => self.advance(2, Kind::Punctuation),
                _ => self.single(Kind::Colon),
            },
            b'|' | b'@' => self.advance(if self.at(1) == Some(first) { 2 } else { 1 }, Kind::Punctuation),
            b'\\' => self.single(Kind::Error("a backslash outside a string")),
            b'$' => self.dollar(),
            b'x' | b'X' | b'b' | b'B' if self.at(1) == Some(b'\'') => self.hex_or_binary_string(first),
            b if is_word_byte(b) => self.word(),
            b if b >= 0x80 => {
                // The whole character, so the token ends on a character boundary.
                let length = if b >= 0xF0 {
                    4
                } else if b >= 0xE0 {
                    3
                } else {
                    2
                };
                self.advance(
                    length.min(self.text.len() - self.pos),
                    Kind::Error("a non-ASCII character outside a string or quoted identifier"),
                )
            }
            _ => self.single(Kind::Error("a character ClickHouse does not accept here")),
        }
    }

    fn single(&mut self, kind: Kind) -> Kind {
        self.advance(1, kind)
    }

    fn advance(&mut self, by: usize, kind: Kind) -> Kind {
        self.pos += by;
        kind
    }

    fn word(&mut self) -> Kind {
        while self.at(0).is_some_and(|b| is_word_byte(b) || b == b'$') {
            self.pos += 1;
        }
        Kind::BareWord
    }

    /// A quoted token: a backslash escapes the next byte, a doubled quote is one quote.
    fn quoted(&mut self, quote: u8, kind: Kind, unclosed: &'static str) -> Kind {
        self.pos += 1;
        loop {
            match self.at(0) {
                None => return Kind::Error(unclosed),
                Some(b'\\') => {
                    if self.at(1).is_none() {
                        self.pos = self.text.len();
                        return Kind::Error(unclosed);
                    }
                    self.pos += 2;
                }
                Some(b) if b == quote => {
                    self.pos += 1;
                    if self.at(0) == Some(quote) {
                        self.pos += 1;
                        continue;
                    }
                    return kind;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn line_comment(&mut self) -> Kind {
        // A newline ends it; nothing escapes the newline.
        while self.at(0).is_some_and(|b| b != b'\n') {
            self.pos += 1;
        }
        Kind::Comment
    }

    /// `/* … */`, nested.
    fn block_comment(&mut self) -> Kind {
        self.pos += 2;
        let mut depth = 1;
        while self.pos + 2 <= self.text.len() {
            match (self.text[self.pos], self.text[self.pos + 1]) {
                (b'/', b'*') => {
                    self.pos += 2;
                    depth += 1;
                }
                (b'*', b'/') => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return Kind::Comment;
                    }
                }
                _ => self.pos += 1,
            }
        }
        self.pos = self.text.len();
        Kind::Error("a /* comment is not closed")
    }

    /// `$tag$ … $tag$` (the tag is everything up to the next `$`), else a lone `$`, else the
    /// start of a bare word.
    fn dollar(&mut self) -> Kind {
        let rest = &self.text[self.pos..];
        if let Some(tag_end) = rest[1..].iter().position(|&b| b == b'$').map(|i| i + 1) {
            let tag = &rest[..=tag_end];
            let body = &rest[tag.len()..];
            if let Some(close) = body.windows(tag.len()).position(|w| w == tag) {
                self.pos += tag.len() + close + tag.len();
                return Kind::String;
            }
        }
        if !self.at(1).is_some_and(is_word_byte) {
            return self.single(Kind::Punctuation);
        }
        self.word()
    }

    fn hex_or_binary_string(&mut self, prefix: u8) -> Kind {
        self.pos += 2;
        let hex = prefix.eq_ignore_ascii_case(&b'x');
        while self.at(0).is_some_and(|b| if hex { b.is_ascii_hexdigit() } else { b == b'0' || b == b'1' }) {
            self.pos += 1;
        }
        if self.at(0) != Some(b'\'') {
            self.pos = self.text.len();
            return Kind::Error("a hexadecimal or binary string is not closed");
        }
        self.pos += 1;
        Kind::String
    }

    /// `_` between digits: not first in a block, not doubled, not last.
    fn is_separator(&self, start_of_block: bool, hex: bool) -> bool {
        if self.at(0) != Some(b'_') || start_of_block {
            return false;
        }
        match self.at(1) {
            None => false,
            Some(next) => {
                if hex {
                    next.is_ascii_hexdigit()
                } else {
                    next.is_ascii_digit()
                }
            }
        }
    }

    /// A run of (hexadecimal) digits and separators.
    fn digits(&mut self, hex: bool, mut start_of_block: bool) {
        while self.at(0).is_some_and(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            || self.is_separator(start_of_block, hex)
        {
            self.pos += 1;
            start_of_block = false;
        }
    }

    fn exponent(&mut self, marker: &[u8]) {
        if self.pos + 1 < self.text.len() && marker.contains(&self.text[self.pos]) {
            self.pos += 1;
            if self.pos + 1 < self.text.len() && matches!(self.text[self.pos], b'-' | b'+') {
                self.pos += 1;
            }
            self.digits(false, true);
        }
    }

    fn number(&mut self) -> Kind {
        let start = self.pos;
        if self.previous == Some(Kind::Dot) {
            // `x.1.1` is tuple access twice, so after a dot only a plain integer is read.
            self.pos += 1;
            self.digits(false, false);
        } else {
            let mut hex = false;
            let mut start_of_block = false;
            if self.text.len() > self.pos + 2
                && self.text[self.pos] == b'0'
                && matches!(self.text[self.pos + 1], b'x' | b'X' | b'b' | b'B')
            {
                let third = self.text[self.pos + 2];
                let valid = if self.text[self.pos + 1].eq_ignore_ascii_case(&b'x') {
                    hex = third.is_ascii_hexdigit();
                    hex
                } else {
                    third == b'0' || third == b'1'
                };
                if valid {
                    self.pos += 2;
                    start_of_block = true;
                } else {
                    self.pos += 1;
                }
            } else {
                self.pos += 1;
            }
            self.digits(hex, start_of_block);
            if self.at(0) == Some(b'.') {
                self.pos += 1;
                self.digits(hex, true);
            }
            self.exponent(if hex { b"pP" } else { b"eE" });
        }
        // A number running into letters is one bare word (`1st`), or an error (`1.5x`).
        if self.at(0).is_some_and(is_word_byte) {
            while self.at(0).is_some_and(is_word_byte) {
                self.pos += 1;
            }
            if self.text[start..self.pos].iter().all(|&b| is_word_byte(b) || b == b'$') {
                return Kind::BareWord;
            }
            return Kind::Error("a malformed number");
        }
        Kind::Number
    }

    /// A qualifier or tuple-access dot, or the start of a number such as `.5`.
    fn dot(&mut self) -> Kind {
        let digit_follows = self.at(1).is_some_and(|b| b.is_ascii_digit());
        let after_operand = matches!(
            self.previous,
            Some(Kind::ClosingBracket | Kind::BareWord | Kind::QuotedIdentifier | Kind::Number)
        );
        if self.pos > 0 && (!digit_follows || after_operand) {
            return self.single(Kind::Dot);
        }
        self.pos += 1;
        self.digits(false, true);
        self.exponent(b"eE");
        Kind::Number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        tokens(sql).into_iter().filter(|t| t.kind != Kind::Whitespace).map(|t| (t.kind, &sql[t.start..t.end])).collect()
    }

    #[test]
    fn a_backslash_escapes_inside_quoted_identifiers() {
        // The confirmed bypass: the identifier runs on past the backtick a backslash escapes.
        let sql = "SELECT `a\\` FROM system.tables -- ` FROM events";
        assert_eq!(
            kinds(sql),
            vec![
                (Kind::BareWord, "SELECT"),
                (Kind::QuotedIdentifier, "`a\\` FROM system.tables -- `"),
                (Kind::BareWord, "FROM"),
                (Kind::BareWord, "events"),
            ]
        );
        assert_eq!(kinds("\"a\"\"b\"")[0], (Kind::QuotedIdentifier, "\"a\"\"b\""));
        assert_eq!(kinds("'it''s'")[0], (Kind::String, "'it''s'"));
    }

    #[test]
    fn heredoc_tags_are_anything_up_to_the_next_dollar() {
        assert_eq!(kinds("SELECT $a b$ x $a b$, 1")[1], (Kind::String, "$a b$ x $a b$"));
        assert_eq!(kinds("SELECT $$x$$")[1], (Kind::String, "$$x$$"));
        assert_eq!(kinds("SELECT a$b")[1], (Kind::BareWord, "a$b"));
        assert_eq!(kinds("SELECT $ 1")[1], (Kind::Punctuation, "$"));
    }

    #[test]
    fn comments_of_every_kind() {
        assert_eq!(kinds("# c\nSELECT")[0], (Kind::Comment, "# c"));
        assert_eq!(kinds("#!c\nSELECT")[0], (Kind::Comment, "#!c"));
        assert!(matches!(kinds("#c")[0].0, Kind::Error(_)));
        assert_eq!(kinds("// c\n1")[0], (Kind::Comment, "// c"));
        assert_eq!(kinds("/* a /* b */ c */ 1")[0], (Kind::Comment, "/* a /* b */ c */"));
        assert!(matches!(kinds("/* a /* b */ 1")[0].0, Kind::Error(_)));
    }

    #[test]
    fn numbers_dots_and_words() {
        // After a number a dot is tuple access, so `.5` is a number only where no operand precedes.
        assert_eq!(
            kinds(".5 0x1F 1_000 1e-5 1st"),
            vec![
                (Kind::Number, ".5"),
                (Kind::Number, "0x1F"),
                (Kind::Number, "1_000"),
                (Kind::Number, "1e-5"),
                (Kind::BareWord, "1st"),
            ]
        );
        assert_eq!(
            kinds("t.1.2"),
            vec![(Kind::BareWord, "t"), (Kind::Dot, "."), (Kind::Number, "1"), (Kind::Dot, "."), (Kind::Number, "2"),]
        );
        assert!(matches!(kinds("1.5x")[0].0, Kind::Error(_)));
        assert_eq!(kinds("x'4A'")[0], (Kind::String, "x'4A'"));
    }

    #[test]
    fn non_ascii_outside_quotes_is_refused_inside_is_fine() {
        assert!(matches!(kinds("SELECT\u{a0}1")[1].0, Kind::Error(_)));
        assert!(matches!(kinds("SELECT \u{2018}a\u{2019}")[1].0, Kind::Error(_)));
        assert_eq!(kinds("SELECT 'é'")[1], (Kind::String, "'é'"));
    }
}
