//! Authentication: what a registry's 401 challenges ask for (Basic, or Bearer with a
//! token endpoint), the Authorization header of a request, tokens fetched per scope set
//! and cached, and the hints of a refusal.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::document::read_document;
use super::origin::{redirect, token_realm, too_many_redirects, MAX_REDIRECTS};
use super::request::{registry_error, with_hint};
use super::Client;
use crate::auth::{parse_challenges, TokenResponse};
use crate::error::{Error, Result};
#[cfg(doc)]
use crate::limits::{Limits, MAX_DOCUMENT};

/// How the registry wants to be authenticated, and the tokens it gave.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    /// The registry asked for Basic auth.
    pub(super) basic: bool,
    /// The registry's Bearer realm and service.
    pub(super) bearer: Option<(String, Option<String>)>,
    /// Tokens by scope set.
    pub(super) tokens: HashMap<String, String>,
}

impl Client {
    /// Records what a 401's `WWW-Authenticate` asks for; returns whether it was understood.
    pub(super) fn learn_challenge(&self, header: &str) -> bool {
        let mut auth = self.0.auth.lock().expect("lock");
        let mut understood = false;
        for c in parse_challenges(header) {
            match c.scheme.as_str() {
                "bearer" => {
                    if let Some(realm) = c.params.get("realm") {
                        auth.bearer = Some((realm.clone(), c.params.get("service").cloned()));
                        understood = true;
                    }
                }
                "basic" => {
                    auth.basic = true;
                    understood = true;
                }
                _ => {}
            }
        }
        understood
    }

    /// The Authorization header for a request needing `scopes`, fetching a token if the
    /// registry uses Bearer auth and none is cached for them (by `deadline` when given, and
    /// within [`Limits::request_timeout`] anyway).
    pub(super) fn authorization(
        &self,
        scopes: &[String],
        deadline: Option<Instant>,
    ) -> Result<Option<String>> {
        let (basic, bearer, cached) = {
            let auth = self.0.auth.lock().expect("lock");
            (
                auth.basic,
                auth.bearer.clone(),
                auth.tokens.get(&scopes.join(" ")).cloned(),
            )
        };
        if let Some(t) = cached {
            return Ok(Some(format!("Bearer {t}")));
        }
        if let Some((realm, service)) = bearer {
            let own = self.document_deadline();
            let deadline = deadline.map_or(own, |d| d.min(own));
            let token = self.fetch_token(&realm, service.as_deref(), scopes, deadline)?;
            self.0
                .auth
                .lock()
                .expect("lock")
                .tokens
                .insert(scopes.join(" "), token.clone());
            return Ok(Some(format!("Bearer {token}")));
        }
        if basic {
            if let Some(c) = &self.0.opts.credentials {
                return Ok(Some(c.basic_header()));
            }
        }
        Ok(None)
    }

    /// `GET realm?service=...&scope=...` with the credentials, if any, as Basic auth; the
    /// answer (at most [`MAX_DOCUMENT`]) must be complete by `deadline`.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        deadline: Instant,
    ) -> Result<String> {
        let base = self.base_url()?;
        let mut url =
            token_realm(realm, &base, self.0.opts.insecure).map_err(|reason| Error::Auth {
                registry: self.0.host.clone(),
                reason,
            })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let what = format!("token from {realm}");
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.timeout(&what))?;
        let mut target = url.to_string();
        let mut hops = 0;
        let resp = loop {
            let mut req = self.0.agent.get(&target).timeout(remaining);
            // The credentials go to the realm only, not where it redirects.
            if let (Some(c), 0) = (&self.0.opts.credentials, hops) {
                req = req.set("Authorization", &c.basic_header());
            }
            self.0.stats.requests.fetch_add(1, Ordering::Relaxed);
            let res = req.call();
            if let Ok(r) = &res {
                match redirect("GET", &target, r, self.0.opts.insecure) {
                    Some(_) if hops >= MAX_REDIRECTS => {
                        return Err(too_many_redirects("GET", realm))
                    }
                    Some(next) => {
                        target = next?.to_string();
                        hops += 1;
                        continue;
                    }
                    None => {}
                }
            }
            break res;
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => {
                let e = registry_error("GET", realm, code, resp);
                return Err(if code == 401 || code == 403 {
                    with_hint(
                        e,
                        if self.0.opts.credentials.is_some() {
                            "the token endpoint refused the credentials (berth login again?)"
                        } else {
                            "no credentials for this registry (berth login REGISTRY)"
                        },
                    )
                } else {
                    e
                });
            }
            Err(ureq::Error::Transport(_)) if Instant::now() >= deadline => {
                return Err(self.timeout(what));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::Transport {
                    method: "GET".into(),
                    url: realm.to_string(),
                    reason: crate::error::transport_reason(&t),
                })
            }
        };
        let body = read_document(resp, &what, || self.timeout(&what))?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::protocol(format!("token from {realm}"), e.to_string()))?;
        tracing::debug!(
            "token for {scopes:?} from {realm}, expires in {:?}s",
            t.expires_in
        );
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::protocol(format!("token from {realm}"), "no token in the answer"))
    }

    pub(super) fn unauthorized(
        &self,
        method: &str,
        url: &str,
        resp: ureq::Response,
        had_credentials: bool,
    ) -> Error {
        let e = registry_error(method, url, 401, resp);
        with_hint(
            e,
            &if had_credentials || self.0.opts.credentials.is_some() {
                format!("the credentials for {} were refused", self.0.host)
            } else {
                format!(
                    "no credentials for {} (berth login {})",
                    self.0.host, self.0.host
                )
            },
        )
    }
}
