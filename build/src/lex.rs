//! Words and variables as docker's builder reads them (its `shell_lex`): quotes, the escape
//! character, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?msg}` and `${VAR?msg}`; and the `KEY=VALUE` lists of `ENV`, `LABEL`
//! and `ARG`.
//!
//! Written here rather than taken from a crate: shell-word crates implement POSIX shell
//! rules, and the Dockerfile's differ (a configurable escape character, no command
//! substitution, no globbing, `$` before anything else kept literally).

/// A variable lookup: the value of a name, if it is set.
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands one word: quotes removed, escapes applied, variables substituted.
pub fn expand(word: &str, vars: Vars<'_>, escape: char) -> Result<String, String> {
    Ok(expand_inner(word, vars, escape, false)?.join(""))
}

/// Expands a string and splits it into words at unquoted whitespace (docker's
/// `ProcessWords`, for the string forms of `EXPOSE` and `VOLUME`).
pub fn expand_words(s: &str, vars: Vars<'_>, escape: char) -> Result<Vec<String>, String> {
    expand_inner(s, vars, escape, true)
}

fn expand_inner(
    word: &str,
    vars: Vars<'_>,
    escape: char,
    split: bool,
) -> Result<Vec<String>, String> {
    let chars: Vec<char> = word.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if split && c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                i += 1;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                if i == chars.len() {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        );
                    };
                    if d == '"' {
                        i += 1;
                        break;
                    }
                    if d == escape {
                        match chars.get(i + 1) {
                            Some(&n) if n == '"' || n == '$' || n == escape => {
                                cur.push(n);
                                i += 2;
                            }
                            _ => {
                                cur.push(d);
                                i += 1;
                            }
                        }
                    } else if d == '$' {
                        let (value, used) = variable(&chars[i..], vars, escape)?;
                        cur.push_str(&value);
                        i += used;
                    } else {
                        cur.push(d);
                        i += 1;
                    }
                }
            }
            '$' => {
                in_word = true;
                let (value, used) = variable(&chars[i..], vars, escape)?;
                if split {
                    // Unquoted: the value splits into words as well.
                    let mut parts = value.split_whitespace().peekable();
                    let leading = value.starts_with(char::is_whitespace);
                    if leading && !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                    while let Some(p) = parts.next() {
                        cur.push_str(p);
                        if parts.peek().is_some() {
                            words.push(std::mem::take(&mut cur));
                        }
                    }
                    if value.ends_with(char::is_whitespace) && !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                } else {
                    cur.push_str(&value);
                }
                i += used;
            }
            c if c == escape => {
                in_word = true;
                match chars.get(i + 1) {
                    Some(&n) => {
                        cur.push(n);
                        i += 2;
                    }
                    None => {
                        cur.push(c);
                        i += 1;
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_word || !split {
        words.push(cur);
    }
    Ok(words)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A variable reference at `s[0] == '$'`: its value and how many chars it used.
fn variable(s: &[char], vars: Vars<'_>, escape: char) -> Result<(String, usize), String> {
    match s.get(1) {
        Some('{') => braced(s, vars, escape),
        Some(&c) if is_name_char(c) => {
            let len = s[1..].iter().take_while(|c| is_name_char(**c)).count();
            let name: String = s[1..=len].iter().collect();
            Ok((vars(&name).unwrap_or_default(), len + 1))
        }
        // `$` before anything else is a literal `$`.
        _ => Ok(("$".into(), 1)),
    }
}

fn braced(s: &[char], vars: Vars<'_>, escape: char) -> Result<(String, usize), String> {
    let mut i = 2;
    let name_len = s[i..].iter().take_while(|c| is_name_char(**c)).count();
    if name_len == 0 {
        return Err("bad substitution: ${} needs a variable name".into());
    }
    let name: String = s[i..i + name_len].iter().collect();
    i += name_len;
    let value = vars(&name);
    match s.get(i) {
        Some('}') => return Ok((value.unwrap_or_default(), i + 1)),
        None => return Err(format!("missing '}}' in ${{{name}")),
        _ => {}
    }
    let colon = s[i] == ':';
    if colon {
        i += 1;
    }
    let op = *s
        .get(i)
        .ok_or_else(|| format!("missing '}}' in ${{{name}"))?;
    if !matches!(op, '-' | '+' | '?') {
        return Err(format!(
            "unsupported modifier ({op}) in substitution of {name}"
        ));
    }
    i += 1;
    // The word runs to the matching '}' (nested ${...} allowed).
    let start = i;
    let mut depth = 0;
    while i < s.len() {
        match s[i] {
            c if c == escape => i += 1,
            '{' if i > 0 && s[i - 1] == '$' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    if i >= s.len() {
        return Err(format!("missing '}}' in ${{{name}"));
    }
    let word: String = s[start..i].iter().collect();
    let set = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    let out = match op {
        '-' if set => value.unwrap_or_default(),
        '-' => expand(&word, vars, escape)?,
        '+' if set => expand(&word, vars, escape)?,
        '+' => String::new(),
        _ if set => value.unwrap_or_default(),
        _ => {
            let msg = expand(&word, vars, escape)?;
            return Err(if msg.is_empty() {
                format!("{name}: is not allowed to be unset")
            } else {
                format!("{name}: {msg}")
            });
        }
    };
    Ok((out, i + 1))
}

/// Splits an instruction's arguments at unquoted whitespace, keeping quotes and escapes for
/// [`expand`] (docker's `parseWords`).
pub fn raw_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                cur.push(c);
            }
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ if c == escape => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The `KEY=VALUE` pairs of `ENV` or `LABEL` (values expanded; keys of `LABEL` may be
/// quoted); the legacy one-pair form `KEY VALUE` too.
pub fn name_values(
    raw: &str,
    vars: Vars<'_>,
    escape: char,
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    let words = raw_words(raw, escape);
    let Some(first) = words.first() else {
        return Err(format!("{what} requires at least one argument"));
    };
    if !first.contains('=') {
        // Legacy form: ENV KEY the rest of the line.
        let rest = raw.trim_start()[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!("{what} names {first} but gives it no value"));
        }
        return Ok(vec![(
            expand(first, vars, escape)?,
            expand(rest, vars, escape)?,
        )]);
    }
    words
        .iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("{what}: {w:?} is not KEY=VALUE"))?;
            let key = expand(k, vars, escape)?;
            if key.is_empty() {
                return Err(format!("{what}: {w:?} has an empty name"));
            }
            Ok((key, expand(v, vars, escape)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("one".into()),
            "E" => Some(String::new()),
            "S" => Some("x y".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> Result<String, String> {
        expand(s, &env, '\\')
    }

    #[test]
    fn variables_expand_as_docker_expands_them() {
        assert_eq!(ex("$A/${A}").unwrap(), "one/one");
        assert_eq!(ex("${B:-def}|${E:-def}|${E-def}").unwrap(), "def|def|");
        assert_eq!(ex("${A:+alt}|${B:+alt}|${E+alt}").unwrap(), "alt||alt");
        assert_eq!(ex("${B:-${A}x}").unwrap(), "onex");
        assert_eq!(ex("'$A' \"$A\" \\$A").unwrap(), "$A one $A");
        assert_eq!(ex("cost $ 5").unwrap(), "cost $ 5");
        assert!(ex("${B:?must be set}").unwrap_err().contains("must be set"));
        assert!(ex("${A").is_err());
        assert!(ex("'open").is_err());
        assert_eq!(expand("`$A", &env, '`').unwrap(), "$A");
    }

    #[test]
    fn words_split_at_unquoted_spaces() {
        assert_eq!(
            expand_words("80/tcp  \"a b\" $S", &env, '\\').unwrap(),
            ["80/tcp", "a b", "x", "y"]
        );
        assert_eq!(
            raw_words("a=\"b c\" d=e\\ f", '\\'),
            ["a=\"b c\"", "d=e\\ f"]
        );
    }

    #[test]
    fn name_values_read_both_forms() {
        let v = name_values("A=1 B=\"two words\" C=$A", &env, '\\', "ENV").unwrap();
        assert_eq!(
            v,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "one".into())
            ]
        );
        let v = name_values("KEY some value here", &env, '\\', "ENV").unwrap();
        assert_eq!(v, [("KEY".to_string(), "some value here".to_string())]);
        assert!(name_values("=x", &env, '\\', "ENV").is_err());
        assert!(name_values("LONELY", &env, '\\', "ENV").is_err());
    }
}
