//! Untrusted text made safe to show: what a server prints or replies reaches students and
//! staff in every report, so it passes through here first.
//!
//! [`clean_text`] drops terminal escape sequences and control characters, and makes the
//! invisible characters that reorder or hide text visible as `[U+XXXX]` (bidi overrides and
//! isolates, zero-width characters, tag characters). [`quote_output`] puts a server's output
//! behind a margin, so no line of it can pass for a line of the grader's own (a forged
//! `PASS routing` or `21/21 checks passed`).

/// The margin in front of every line of quoted server output.
pub const QUOTE_MARGIN: &str = "| ";

/// Whether `c` is an invisible character that reorders or hides text (Unicode format
/// characters that a reader cannot see): bidi embeddings, overrides, isolates and marks,
/// zero-width spaces and joiners, the word joiner and invisible operators, the byte order
/// mark, the soft hyphen, interlinear annotation marks and tag characters.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{061c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}

/// Makes text from a server safe to show: drops terminal escape sequences (CSI `ESC [ … final`,
/// OSC `ESC ] … BEL` or `ESC \`, and two-character escapes) and every control character except
/// newline and tab, turns `\r\n` and lone `\r` into `\n`, drops the non-characters U+FFFE and
/// U+FFFF (invalid in XML), and writes each invisible format character
/// ([`is_invisible_format`]) as `[U+XXXX]`, so a right-to-left override cannot turn
/// `FAIL` into something else on screen and a zero-width space cannot hide in a name.
pub fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            '\u{fffe}' | '\u{ffff}' => {}
            c if c.is_control() => {}
            c if is_invisible_format(c) => out.push_str(&format!("[U+{:04X}]", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Server output as it appears in feedback: cleaned ([`clean_text`]) and with every line
/// behind [`QUOTE_MARGIN`].
pub fn quote_output(text: &str) -> String {
    let cleaned = clean_text(text);
    let mut out = String::with_capacity(cleaned.len() + 16);
    for line in cleaned.trim_end_matches('\n').split('\n') {
        out.push_str(QUOTE_MARGIN);
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_go_and_the_rest_stays() {
        let nasty = "Traceback <module> & \"quoted\" 'single' ]]> \u{1b}[31mred\u{1b}[0m\0nul\u{7}bell\r\nend\u{1b}]0;title\u{7}!";
        assert_eq!(
            clean_text(nasty),
            "Traceback <module> & \"quoted\" 'single' ]]> rednulbell\nend!"
        );
        assert_eq!(clean_text("a\rb\tc\u{85}d\u{ffff}é"), "a\nb\tcdé");
        assert_eq!(clean_text("cut \u{1b}["), "cut ");
        assert_eq!(clean_text("cut \u{1b}"), "cut ");
    }

    #[test]
    fn bidi_and_zero_width_characters_become_visible() {
        // A right-to-left override that would show "FAIL" as "LIAF", a zero-width space
        // inside a word, an isolate, a tag character and a byte order mark.
        let text = "\u{202e}FAIL\u{202c} pa\u{200b}ss \u{2066}x\u{2069} \u{e0041}\u{feff}";
        let cleaned = clean_text(text);
        assert_eq!(
            cleaned,
            "[U+202E]FAIL[U+202C] pa[U+200B]ss [U+2066]x[U+2069] [U+E0041][U+FEFF]"
        );
        assert!(!cleaned.chars().any(is_invisible_format));
        // Ordinary right-to-left text is not touched.
        assert_eq!(clean_text("שלום مرحبا"), "שלום مرحبا");
    }

    #[test]
    fn quoted_output_has_a_margin_on_every_line() {
        let forged = "  PASS  routing          0.10s\nalice pool: 11/11 checks passed\r\n";
        let quoted = quote_output(forged);
        assert_eq!(
            quoted,
            "|   PASS  routing          0.10s\n| alice pool: 11/11 checks passed\n"
        );
        assert!(quoted.lines().all(|l| l.starts_with(QUOTE_MARGIN)));
    }
}
