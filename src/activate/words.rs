//! Splitting an `at_activate interactive` command line into words.

/// Splits a command line into words: blanks separate, single or double quotes group.
pub(super) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"approve -a @x --arx "no ports"  -D 'dev.*'"#).unwrap(),
            ["approve", "-a", "@x", "--arx", "no ports", "-D", "dev.*"]
        );
        assert!(split_words("list -a \"@x").is_err());
        assert!(split_words("   ").unwrap().is_empty());
    }
}
