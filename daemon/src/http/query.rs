//! Query strings: percent-decoded pairs, docker's booleans (`1`, `true`, `True`), and the
//! `filters` parameter (JSON, in either of the two shapes docker clients send).

use std::collections::BTreeMap;

use super::error::{ApiError, ApiResult};

/// A parsed query string.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// `filters`: each key with its values (`{"label": ["a=b"], "status": ["running"]}`).
pub type Filters = BTreeMap<String, Vec<String>>;

impl Query {
    /// Parses `a=1&b=x%20y`.
    pub fn parse(q: &str) -> Query {
        Query {
            pairs: form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean as docker reads it: absent is `default`; `0`, `false`, `no` and empty are
    /// false; anything else true.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"),
        }
    }

    /// An integer; a value that does not parse is a 400 naming the parameter.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}")))
            })
            .transpose()
    }

    /// The `filters` parameter.
    pub fn filters(&self) -> ApiResult<Filters> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

/// Parses `filters`: `{"k": ["v", ...]}` or the older `{"k": {"v": true}}`.
pub fn parse_filters(text: &str) -> ApiResult<Filters> {
    if text.trim().is_empty() {
        return Ok(Filters::new());
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filter: not an object"))?;
    let mut out = Filters::new();
    for (k, v) in obj {
        let values = match v {
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>(),
            serde_json::Value::Object(m) => Some(
                m.iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(s, _)| s.clone())
                    .collect(),
            ),
            _ => None,
        }
        .ok_or_else(|| ApiError::bad_request(format!("invalid filter {k:?}")))?;
        out.insert(k.clone(), values);
    }
    Ok(out)
}

/// Whether `labels` satisfy every `label` filter (`key` or `key=value`).
pub fn labels_match(filters: &Filters, labels: &BTreeMap<String, String>) -> bool {
    filters.get("label").is_none_or(|want| {
        want.iter().all(|w| match w.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(w.as_str()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_flags_and_filters() {
        let q = Query::parse(
            "all=1&name=a%20b&force=False&filters=%7B%22label%22%3A%5B%22x%3D1%22%5D%7D",
        );
        assert!(q.flag("all", false));
        assert!(!q.flag("force", true));
        assert_eq!(q.get("name"), Some("a b"));
        let f = q.filters().unwrap();
        assert_eq!(f["label"], ["x=1"]);
        let old = parse_filters(r#"{"status":{"running":true,"exited":false}}"#).unwrap();
        assert_eq!(old["status"], ["running"]);
        assert!(parse_filters("[1]").is_err());
        assert!(Query::parse("tail=x").int("tail").is_err());
        let mut labels = BTreeMap::new();
        labels.insert("x".to_string(), "1".to_string());
        assert!(labels_match(&f, &labels));
        labels.insert("x".to_string(), "2".to_string());
        assert!(!labels_match(&f, &labels));
    }
}
