//! Architecture test: enforces the module layering of `src/`.
//!
//! Why it exists: this SDK's modules once grew into one dependency knot (`types` -> `cache` ->
//! `pipeline` -> `status` -> ... -> `types`): every change rippled everywhere and no module could
//! be understood or tested alone. This pins the layering down so it cannot silently regress: each
//! top-level module sits in a layer of [`LAYERS`] and uses only lower layers (or allowed same-layer
//! edges), no module cycle exists, and `src/lib.rs` keeps modules private (`mod x;` + `pub use`)
//! under `#![warn(unreachable_pub)]`.
//!
//! Std only, it reads the sources: a dependency is a `crate::<module>` path (`use` lines, grouped
//! `use crate::{a, b::{c, d}}`, inline paths) or a `super::` chain up to the crate root, found
//! after blanking comments and string/char literals. `#[cfg(test)]` code counts too; paths to root
//! re-exports (`crate::ApiError`) are not module edges.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first: `(name, its modules, allowed same-layer edges)`. A module may use any
/// module of a lower layer, but one of its own layer only through an allowed edge `from->to` (`*`:
/// any module of the layer); cycles are rejected regardless. Modules listed here but absent from
/// `src/` are skipped, so the table can describe the target layout before a refactor lands.
/// `src/lib.rs` is the root and belongs to no layer.
const LAYERS: &[(&str, &str, &str)] = &[
    (
        "ground",
        "types error ids events observe logs http tls runtime store defaults cancel",
        "*->*",
    ),
    ("network", "net", ""),
    ("features", "cache queue upload ws", "queue->cache"),
    ("top", "status config client", "client->*"),
];

/// module -> module it uses -> where (`src/x.rs:12`), in file and line order.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn layer_of(module: &str) -> Option<usize> {
    (0..LAYERS.len()).find(|&l| LAYERS[l].1.split(' ').any(|m| m == module))
}

fn same_layer_allowed(layer: usize, from: &str, to: &str) -> bool {
    let mut edges = LAYERS[layer].2.split(' ').flat_map(|e| e.split_once("->"));
    edges.any(|(f, t)| (f == "*" || f == from) && (t == "*" || t == to))
}

/// Every `.rs` file under `dir` but `src/lib.rs`, as `(top-level module, path, module depth)`; the
/// depth of `src/x.rs` and `src/x/mod.rs` is 1, of `src/x/y.rs` 2, ...
fn source_files(dir: &Path, out: &mut Vec<(String, PathBuf, usize)>) {
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("directory entry").path();
        let rel = path.strip_prefix(root().join("src")).unwrap();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && rel != Path::new("lib.rs") {
            let top = Path::new(rel.iter().next().unwrap()).file_stem().unwrap();
            let depth = rel.components().count() - usize::from(path.ends_with("mod.rs"));
            out.push((top.to_string_lossy().into_owned(), path, depth));
        }
    }
}

/// The top-level modules and their dependency graph.
fn graph() -> (BTreeSet<String>, Graph) {
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    files.sort();
    let mods: BTreeSet<String> = files.iter().map(|f| f.0.clone()).collect();
    let mut graph = Graph::new();
    for (name, path, depth) in &files {
        let edges = graph.entry(name.clone()).or_default();
        let src = fs::read_to_string(path).expect("read a source file");
        let shown = path.strip_prefix(root()).unwrap().display();
        for (to, line) in crate_refs(&src, *depth) {
            if to != *name && mods.contains(&to) {
                edges.entry(to).or_default().push(format!("{shown}:{line}"));
            }
        }
    }
    (mods, graph)
}

/// Index just past the first `pat` in `c` at or after `from` (the end if there is none).
fn past(c: &[char], from: usize, pat: &str) -> usize {
    let pat: Vec<char> = pat.chars().collect();
    let hay = c.get(from..).unwrap_or(&[]);
    let found = hay.windows(pat.len()).position(|w| *w == pat[..]);
    found.map_or(c.len(), |p| from + p + pat.len())
}

/// `src` with comments and string/char literals blanked to spaces (newlines kept, so lines match).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize, ch: char| c.get(k) == Some(&ch);
    let (mut out, mut i) = (String::with_capacity(src.len()), 0);
    while i < c.len() {
        let word_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        let r = usize::from(!word_before && (at(i, 'b') || at(i, 'c')) && at(i + 1, 'r'));
        let hashes = c[i + r + 1..].iter().take_while(|&&ch| ch == '#').count();
        let end = if at(i, '/') && at(i + 1, '/') {
            past(&c, i, "\n")
        } else if at(i, '/') && at(i + 1, '*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                let step = i32::from(at(j, '/') && at(j + 1, '*'));
                let step = step - i32::from(at(j, '*') && at(j + 1, '/'));
                depth += step;
                j += if step == 0 { 1 } else { 2 };
            }
            j
        } else if !word_before && at(i + r, 'r') && at(i + r + 1 + hashes, '"') {
            past(&c, i + r + 2 + hashes, &format!("\"{}", "#".repeat(hashes)))
        } else if at(i, '"') {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if at(i, '\'') && at(i + 1, '\\') {
            past(&c, i + 3, "'")
        } else if at(i, '\'') && at(i + 2, '\'') {
            i + 3
        } else {
            out.push(c[i]); // code, or the quote of a lifetime or label
            i += 1;
            continue;
        };
        for &ch in &c[i..end.min(c.len())] {
            out.push(if ch == '\n' { ch } else { ' ' });
        }
        i = end;
    }
    out
}

/// Identifiers, `::` and single punctuation characters of stripped source, with their lines.
fn tokens(stripped: &str) -> Vec<(String, usize)> {
    let word = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out: Vec<(String, usize)> = Vec::new();
    for (n, line) in stripped.lines().enumerate() {
        let mut prev = ' ';
        for ch in line.chars() {
            if (word(prev) && word(ch)) || (prev == ':' && ch == ':') {
                out.last_mut().unwrap().0.push(ch);
            } else if !ch.is_whitespace() {
                out.push((ch.to_string(), n + 1));
            }
            prev = ch;
        }
    }
    out
}

/// The first segment (and line) of every path in `src` that starts at the crate root: `crate::x`,
/// each top-level item of `crate::{x, y::z}`, and `super::` chains that climb from the file's
/// module `depth` (plus enclosing inline `mod m { .. }`) up to the root. `$crate` is ignored.
fn crate_refs(src: &str, depth: usize) -> Vec<(String, usize)> {
    let t = tokens(&strip(src));
    let is = |k: usize, s: &str| t.get(k).is_some_and(|(x, _)| x == s);
    let (mut refs, mut inline_mods, mut braces) = (Vec::new(), Vec::new(), 0);
    for k in 0..t.len() {
        let path_start = is(k + 1, "::") && !(k > 0 && (is(k - 1, "$") || is(k - 1, "::")));
        match t[k].0.as_str() {
            "{" => {
                braces += 1;
                if k >= 2 && is(k - 2, "mod") {
                    inline_mods.push(braces);
                }
            }
            "}" => {
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
                braces -= 1;
            }
            "crate" | "super" if path_start => {
                let mut n = k + 2;
                if is(k, "super") {
                    let mut level = depth + inline_mods.len() - 1;
                    while level > 0 && is(n, "super") && is(n + 1, "::") {
                        (level, n) = (level - 1, n + 2);
                    }
                    if level > 0 || is(n, "super") {
                        continue; // stays inside the module (or climbs past the root)
                    }
                }
                if !is(n, "{") {
                    refs.extend(t.get(n).cloned());
                    continue;
                }
                let (mut d, mut item_start) = (0, true);
                for (tok, line) in &t[n..] {
                    match tok.as_str() {
                        "{" => (d, item_start) = (d + 1, d == 0),
                        "}" if d == 1 => break,
                        "}" => d -= 1,
                        "," if d == 1 => item_start = true,
                        _ if item_start => {
                            refs.push((tok.clone(), *line));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    refs
}

/// Lines of `pub mod` declarations (a `pub(crate) mod` is fine).
fn pub_mods(src: &str) -> Vec<usize> {
    let t = tokens(&strip(src));
    let decls = t.windows(2).filter(|w| w[0].0 == "pub" && w[1].0 == "mod");
    decls.map(|w| w[0].1).collect()
}

/// Whether a crate-level `#![warn(..)]` (or `deny`/`forbid`) lists `unreachable_pub`.
fn lints_unreachable_pub(src: &str) -> bool {
    let flat: String = strip(src).split_whitespace().collect();
    let mut attrs = flat.split("#![").skip(1).filter_map(|a| a.split_once('('));
    attrs.any(|(level, rest)| {
        let list = rest.split(")]").next().unwrap_or_default();
        ["warn", "deny", "forbid"].contains(&level)
            && list.split(',').any(|l| l == "unreachable_pub")
    })
}

/// The shortest cycle through `start`, as `[a, .., z]` (`z` uses `a`), from its smallest module.
fn shortest_cycle(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in graph.get(n).into_iter().flat_map(|edges| edges.keys()) {
            if next == start {
                let mut path = vec![n.to_string()];
                while let Some(p) = prev.get(path.last().unwrap().as_str()) {
                    path.push(p.to_string());
                }
                path.reverse();
                let min = (0..path.len()).min_by_key(|&i| &path[i]).unwrap();
                path.rotate_left(min);
                return Some(path);
            }
            if !prev.contains_key(next.as_str()) {
                prev.insert(next, n);
                queue.push_back(next);
            }
        }
    }
    None
}

#[track_caller]
fn assert_none(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn no_dependency_cycles_between_modules() {
    let (_, graph) = graph();
    let cycles = graph.keys().filter_map(|m| shortest_cycle(&graph, m));
    let cycles: BTreeSet<Vec<String>> = cycles.collect();
    let mut report = Vec::new();
    for cycle in &cycles {
        report.push(format!("  {} -> {}", cycle.join(" -> "), cycle[0]));
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            let at = graph[from][to].join(", ");
            report.push(format!("      {from} -> {to}: {at}"));
        }
    }
    assert_none(&format!("{} dependency cycle(s)", cycles.len()), &report);
}

#[test]
fn modules_are_declared_and_only_use_lower_layers_or_allowed_same_layer_edges() {
    let (mods, graph) = graph();
    let mut bad = Vec::new();
    for m in mods.iter().filter(|m| layer_of(m).is_none()) {
        let dir = root().join("src").join(m).is_dir();
        let place = if dir { "/" } else { ".rs" };
        bad.push(format!("  `{m}` (src/{m}{place}): declare it in a layer"));
    }
    for (from, edges) in &graph {
        for (to, locs) in edges {
            let (Some(lf), Some(lt)) = (layer_of(from), layer_of(to)) else {
                continue; // an undeclared module, reported above
            };
            let (f, t, at) = (LAYERS[lf].0, LAYERS[lt].0, locs.join(", "));
            let edge = format!("`{from}` (layer {lf} {f}) -> `{to}` (layer {lt} {t})");
            if lt > lf {
                bad.push(format!("  upward: {edge} at {at}"));
            } else if lt == lf && !same_layer_allowed(lf, from, to) {
                bad.push(format!("  same-layer edge not allowed: {edge} at {at}"));
            }
        }
    }
    assert_none("layer violations (LAYERS in tests/architecture.rs)", &bad);
}

#[test]
fn lib_rs_keeps_modules_private_and_warns_on_unreachable_pub() {
    let lib = fs::read_to_string(root().join("src/lib.rs")).expect("read src/lib.rs");
    let mut bad = Vec::new();
    for line in pub_mods(&lib) {
        let fix = "make it `mod` and `pub use` its public items";
        bad.push(format!("  src/lib.rs:{line}: `pub mod`: {fix}"));
    }
    if !lints_unreachable_pub(&lib) {
        bad.push("  src/lib.rs: missing `#![warn(unreachable_pub)]`".to_string());
    }
    assert_none(
        "src/lib.rs must keep modules private, under unreachable_pub",
        &bad,
    );
}

#[test]
fn every_spawned_task_is_panic_contained() {
    // Issue 13: a task that panics must never die silently; `runtime::contained` is the one
    // wrapper. Unit-test modules (after `#[cfg(test)]`) may spawn as they like.
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    let mut bad = Vec::new();
    for (_, path, _) in files {
        if path.ends_with("runtime.rs") || path.ends_with("net/tests.rs") {
            continue;
        }
        let src = fs::read_to_string(&path).expect("read a source file");
        let code = strip(src.split("#[cfg(test)]").next().unwrap_or_default());
        for (n, line) in code.lines().enumerate() {
            let spawns = line.contains("tokio::spawn(")
                || line.contains("task::spawn(")
                || line.contains("Handle::spawn(")
                // `.spawn(move || …)` is a `std::thread::Builder` thread (listener threads catch
                // each callback's panic themselves).
                || (line.contains(".spawn(")
                    && !line.contains("contained(")
                    && !line.contains(".spawn(move ||"));
            if spawns {
                bad.push(format!("  {}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert_none(
        "tasks spawned without runtime::contained / spawn_contained / spawn_background",
        &bad,
    );
}

/// Tests of the source scanner itself.
mod scanner {
    use super::*;

    fn heads(src: &str, depth: usize) -> Vec<String> {
        crate_refs(src, depth).into_iter().map(|(m, _)| m).collect()
    }

    fn words(src: &str) -> String {
        strip(src).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn strip_blanks_comments_and_literals_but_keeps_lines() {
        let src = "a // crate::x\n/* crate::y /* nested */ crate::z */ b\n/// crate::d\nc";
        assert_eq!(words(src), "a b c");
        assert_eq!(strip(src).lines().count(), 4);
        let lits = r###"f("crate::s \" crate::t", r#"crate::u"#, '"', '\'', b'x', br"crate")"###;
        assert_eq!(words(lits), "f( , , , , b , )");
        assert!(heads(lits, 1).is_empty());
        let lifetimes = "fn f<'a>(x: &'a str) -> &'a str";
        assert_eq!(words(lifetimes), lifetimes);
    }

    #[test]
    fn grouped_uses_and_inline_paths_count_but_macro_crate_does_not() {
        let src = "use crate::{cache::X, queue::{Y, Z},\n    ids};\n";
        let src = format!("{src}use crate::{{self, error::{{self as e}}}};");
        assert_eq!(heads(&src, 1), ["cache", "queue", "ids", "self", "error"]);
        assert_eq!(crate_refs(&src, 1)[2], ("ids".to_string(), 2));
        let src = "let id = crate::ids::new_uuid_v4();\n$crate::x::y!();\nfn f(_: crate::types::T)";
        let found = crate_refs(src, 1);
        assert_eq!(found, [("ids".to_string(), 1), ("types".to_string(), 3)]);
    }

    #[test]
    fn super_counts_only_when_it_climbs_to_the_root() {
        let src = "use super::policy::X;\nsuper::super::net::f();\nmod tests { use super::*; }\n";
        let src = format!("{src}mod t {{ use super::super::store::S; }}");
        assert_eq!(heads(&src, 2), ["net"]); // a file src/m/x.rs
        assert_eq!(heads(&src, 1), ["policy", "store"]); // a file src/x.rs
        assert!(heads("mod tests { use super::{a, b}; }", 1).is_empty());
    }

    #[test]
    fn lib_rs_checks() {
        let lib = "//! pub mod a;\n#![warn(missing_docs,\n unreachable_pub)]\npub mod b;\n";
        assert_eq!(pub_mods(&format!("{lib}pub(crate) mod c;\nmod d;")), [4]);
        assert!(lints_unreachable_pub(lib));
        let commented = "#![warn(missing_docs)]\n// #![warn(unreachable_pub)]";
        assert!(!lints_unreachable_pub(commented));
        assert!(!lints_unreachable_pub("#![allow(unreachable_pub)]"));
    }
}
