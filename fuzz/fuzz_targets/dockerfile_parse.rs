//! Dockerfiles and build contexts (`berth build`, berthd's `/build`): the parser with its
//! directives, heredocs and continuations, docker's variable and word rules over every
//! step's arguments, and `.dockerignore` rules. The first byte picks which. Never a panic;
//! the escape directive never changes what a plain word expands to.
#![no_main]

use std::path::Path;

use berth_build::dockerfile::{self, Inst};
use berth_build::{lex, Ignore};

fn vars(name: &str) -> Option<String> {
    match name {
        "A" => Some("one".into()),
        "EMPTY" => Some(String::new()),
        "SPACED" => Some("x y  z".into()),
        _ => None,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match sel % 3 {
        0 => {
            let Ok(df) = dockerfile::parse(text) else {
                return;
            };
            for step in df.stages.iter().flat_map(|s| s.steps.iter()).chain(df.meta_args.iter()) {
                let raw = match &step.inst {
                    Inst::Env(r) | Inst::Label(r) | Inst::Arg(r) | Inst::User(r) | Inst::Workdir(r) => r.as_str(),
                    Inst::Onbuild(t) => {
                        let _ = dockerfile::parse_trigger(t, step.line);
                        continue;
                    }
                    _ => continue,
                };
                let _ = lex::name_values(raw, &vars, df.escape, "ENV");
                let _ = lex::expand(raw, &vars, df.escape);
                let _ = lex::expand_words(raw, &vars, df.escape);
            }
        }
        1 => {
            if let Ok(ignore) = Ignore::parse(text) {
                for p in ["a", "a/b", "a/b/c.txt", "Dockerfile", ".dockerignore", "x/.git/y"] {
                    let _ = ignore.excludes(Path::new(p));
                }
            }
        }
        _ => {
            let a = lex::expand(text, &vars, '\\');
            let _ = lex::expand_words(text, &vars, '`');
            let _ = lex::raw_words(text, '\\');
            if !text.contains(['\\', '`', '$', '\'', '"']) {
                assert_eq!(a.as_deref(), Ok(text), "a plain word expands to itself");
            }
        }
    }
});
