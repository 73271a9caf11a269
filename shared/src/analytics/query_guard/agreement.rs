//! The lexer agreement check: the guard decides what to scope from sqlparser's tokens, but
//! ClickHouse runs the text with its own lexer. Wherever the two disagree about where a word,
//! quoted identifier, string, number or comment begins or ends, a `FROM` the guard believes is
//! inside an identifier, string or comment would be a real `FROM` to ClickHouse (or the
//! reverse). So a query runs only if both lexers produce exactly the same sequence of those
//! tokens, with the same byte ranges and classes. Whitespace and punctuation are not compared:
//! when every word, literal and comment lines up, what lies between them is whitespace or
//! operators in both.
//!
//! Also here: [`Offsets`], which turns sqlparser's (line, column) locations into byte offsets in
//! constant time each, so both this check and the rewrite stay linear in the query's size.

use sqlparser::tokenizer::{Location, Token as SqlToken, TokenWithSpan, Whitespace as Space};

use super::lexer::{Kind, Token};

/// The classes of token both lexers must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    QuotedIdentifier,
    String,
    Number,
    Comment,
    /// A token ClickHouse has no counterpart for (placeholders, stray characters).
    Other,
}

/// Where the two lexers first part ways: a byte offset into the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disagreement {
    pub at: usize,
}

/// Byte offsets of sqlparser locations (1-based lines, 1-based character columns; only `\n`
/// starts a line, as in sqlparser's tokenizer).
pub struct Offsets<'a> {
    sql: &'a str,
    /// The character index at which each line starts.
    line_starts: Vec<usize>,
    /// The byte offset of each character (empty when the text is ASCII: the same numbers).
    char_bytes: Vec<usize>,
}

impl<'a> Offsets<'a> {
    pub fn new(sql: &'a str) -> Offsets<'a> {
        let mut line_starts = vec![0];
        let mut char_bytes = Vec::new();
        let ascii = sql.is_ascii();
        for (index, (byte, c)) in sql.char_indices().enumerate() {
            if !ascii {
                char_bytes.push(byte);
            }
            if c == '\n' {
                line_starts.push(index + 1);
            }
        }
        Offsets { sql, line_starts, char_bytes }
    }

    /// The byte offset of `location`; past the end is the text's length.
    pub fn byte(&self, location: Location) -> usize {
        let line = (location.line as usize).max(1) - 1;
        let Some(line_start) = self.line_starts.get(line) else { return self.sql.len() };
        let index = line_start + (location.column as usize).max(1) - 1;
        if self.char_bytes.is_empty() {
            return index.min(self.sql.len());
        }
        self.char_bytes.get(index).copied().unwrap_or(self.sql.len())
    }
}

fn clickhouse_class(kind: Kind) -> Option<Class> {
    match kind {
        Kind::BareWord => Some(Class::Word),
        Kind::QuotedIdentifier => Some(Class::QuotedIdentifier),
        Kind::String => Some(Class::String),
        Kind::Number => Some(Class::Number),
        Kind::Comment => Some(Class::Comment),
        Kind::Error(_) => Some(Class::Other),
        _ => None,
    }
}

fn sqlparser_class(token: &SqlToken) -> Option<Class> {
    use SqlToken::*;
    match token {
        Word(word) if word.quote_style.is_none() => Some(Class::Word),
        Word(_) => Some(Class::QuotedIdentifier),
        Number(..) => Some(Class::Number),
        SingleQuotedString(_)
        | DoubleQuotedString(_)
        | TripleSingleQuotedString(_)
        | TripleDoubleQuotedString(_)
        | DollarQuotedString(_)
        | SingleQuotedByteStringLiteral(_)
        | DoubleQuotedByteStringLiteral(_)
        | TripleSingleQuotedByteStringLiteral(_)
        | TripleDoubleQuotedByteStringLiteral(_)
        | SingleQuotedRawStringLiteral(_)
        | DoubleQuotedRawStringLiteral(_)
        | TripleSingleQuotedRawStringLiteral(_)
        | TripleDoubleQuotedRawStringLiteral(_)
        | NationalStringLiteral(_)
        | QuoteDelimitedStringLiteral(_)
        | NationalQuoteDelimitedStringLiteral(_)
        | EscapedStringLiteral(_)
        | UnicodeStringLiteral(_)
        | HexStringLiteral(_) => Some(Class::String),
        Whitespace(Space::SingleLineComment { .. } | Space::MultiLineComment(_)) => Some(Class::Comment),
        Whitespace(_) => None,
        Placeholder(_) | Char(_) | CustomBinaryOperator(_) | CopyData { .. } | Backslash | EOF => Some(Class::Other),
        _ => None,
    }
}

/// Whether ClickHouse's tokens and sqlparser's agree on every word, quoted identifier,
/// literal and comment: same order, same byte ranges, same classes.
pub fn check(clickhouse: &[Token], sqlparser: &[TokenWithSpan], offsets: &Offsets) -> Result<(), Disagreement> {
    let ours = clickhouse.iter().filter_map(|t| clickhouse_class(t.kind).map(|c| (t.start, t.end, c)));
    let theirs = sqlparser
        .iter()
        .filter(|t| t.token != SqlToken::EOF)
        .filter_map(|t| sqlparser_class(&t.token).map(|c| (offsets.byte(t.span.start), offsets.byte(t.span.end), c)));
    let mut ours = ours.peekable();
    let mut theirs = theirs.peekable();
    loop {
        match (ours.next(), theirs.next()) {
            (None, None) => return Ok(()),
            (Some(a), Some(b)) if a == b => {}
            (Some((a, ..)), Some((b, ..))) => return Err(Disagreement { at: a.min(b) }),
            (Some((at, ..)), None) | (None, Some((at, ..))) => return Err(Disagreement { at }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::ClickHouseDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn agree(sql: &str) -> Result<(), Disagreement> {
        let theirs = Tokenizer::new(&ClickHouseDialect {}, sql).tokenize_with_location().unwrap();
        check(&super::super::lexer::tokens(sql), &theirs, &Offsets::new(sql))
    }

    #[test]
    fn offsets_convert_lines_and_multibyte_columns() {
        let sql = "ab\nçd✓e\nf";
        let offsets = Offsets::new(sql);
        assert_eq!(offsets.byte(Location::new(1, 1)), 0);
        assert_eq!(offsets.byte(Location::new(2, 1)), 3);
        assert_eq!(offsets.byte(Location::new(2, 3)), 6);
        assert_eq!(offsets.byte(Location::new(2, 4)), 9);
        assert_eq!(offsets.byte(Location::new(3, 1)), sql.len() - 1);
        assert_eq!(offsets.byte(Location::new(3, 2)), sql.len());
    }

    #[test]
    fn ordinary_queries_agree() {
        for sql in [
            "SELECT e.event_type, count() -- per type\nFROM events e JOIN `users` ON e.user_id = toString(users.id)",
            "SELECT 'it''s', 'a\\'b', \"c\", 1.5e3, x.1 FROM events /* c */ WHERE a != 2",
            "SELECT 'héllo ✓' AS greeting FROM events",
            "SELECT {p:String} AS v",
        ] {
            assert_eq!(agree(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn the_backslash_in_a_quoted_identifier_is_a_disagreement() {
        assert!(agree("SELECT `a\\` FROM system.tables -- ` FROM events").is_err());
        assert!(agree("SELECT \"a\\\" FROM system.tables -- \" FROM events").is_err());
    }
}
