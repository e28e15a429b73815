//! ARCHITECTURE.md's list of module layers, checked against the code: every
//! module of `src/` is listed once, and each imports (names a `crate::`
//! path of) only modules in layers below its own. So the list cannot go
//! stale, and a dependency that points up, or a cycle, fails here with the
//! line that says where.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `layer N: a b c` lines of the ```layers block, as module → layer.
fn documented_layers() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let block = text
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```layers block");
    let mut layers = BTreeMap::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let (head, modules) = line.split_once(':').unwrap_or_else(|| panic!("bad line {line:?}"));
        let number = head.trim().strip_prefix("layer ").and_then(|n| n.parse().ok());
        let number: u32 = number.unwrap_or_else(|| panic!("bad line {line:?}"));
        for module in modules.split_whitespace() {
            let again = layers.insert(module.to_string(), number);
            assert!(again.is_none(), "{module} is listed twice in ARCHITECTURE.md's layers");
        }
    }
    layers
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level module a file belongs to: `run/coding.rs` → `run`.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(root().join("src")).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The production part of a file: before its test module, without comments.
fn production_code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let code = code.split("#[cfg(test)]\npub mod testing").next().unwrap_or("");
    code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The modules named by `crate::name` and `crate::{a, b::c}` paths.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for after in code.split("crate::").skip(1) {
        let list = match after.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or(""),
            None => after,
        };
        for item in list.split(',') {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() && name != "self" {
                names.insert(name);
            }
            if !after.starts_with('{') {
                break;
            }
        }
    }
    names
}

#[test]
fn every_module_imports_only_modules_in_lower_layers() {
    let layers = documented_layers();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root().join("src")) {
        let module = module_of(&file);
        let used = crate_paths(&production_code(&file));
        imports
            .entry(module.clone())
            .or_default()
            .extend(used.into_iter().filter(|m| *m != module));
    }
    let modules: BTreeSet<&String> = imports.keys().collect();
    let listed: BTreeSet<&String> = layers.keys().collect();
    assert_eq!(modules, listed, "ARCHITECTURE.md's layers must list exactly the modules of src/");
    let mut wrong = Vec::new();
    for (module, used) in &imports {
        for dependency in used.iter().filter(|d| layers.contains_key(*d)) {
            if layers[dependency] >= layers[module] {
                wrong.push(format!(
                    "{module} (layer {}) uses {dependency} (layer {})",
                    layers[module], layers[dependency]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that do not point down:\n{}", wrong.join("\n"));
}

#[test]
fn crate_paths_are_read_from_both_forms() {
    let code = "use crate::store::{self, Fields};\nuse crate::{git, logger::line as log};\nlet x = crate::sys::getpid();";
    let found: Vec<String> = crate_paths(code).into_iter().collect();
    assert_eq!(found, ["git", "logger", "store", "sys"]);
}
